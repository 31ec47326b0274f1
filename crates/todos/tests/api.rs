//! The API against a real redis-server (the Debian package), started here on a free
//! loopback port and stopped at the end, and the real `todos` binary.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use todos::client::{request, Response};

/// Kills the child when dropped (also on a failed assertion).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
        assert!(Instant::now() < deadline, "{addr} did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn redis(port: u16) -> Running {
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server (Debian package redis-server; scripts/setup.sh installs it)");
    wait_for(SocketAddr::from(([127, 0, 0, 1], port)));
    Running(child)
}

fn todos(redis_port: u16) -> (Running, SocketAddr) {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_todos"))
        .env("REDIS_URL", format!("redis://127.0.0.1:{redis_port}"))
        .env("LISTEN", format!("127.0.0.1:{port}"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_for(addr);
    (Running(child), addr)
}

fn call(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> Response {
    request(addr, method, path, body, Duration::from_secs(5)).unwrap()
}

fn json(r: &Response) -> Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {:?}", r.body))
}

#[test]
fn todos_api_on_real_redis() {
    let redis_port = free_port();
    let server = redis(redis_port);
    let (_app, addr) = todos(redis_port);

    let r = call(addr, "GET", "/probe", None);
    assert_eq!((r.status, r.body.as_str()), (200, "success"));
    assert_eq!(
        json(&call(addr, "GET", "/todos", None)),
        Value::Array(vec![])
    );

    let r = call(
        addr,
        "POST",
        "/todos",
        Some(r#"{"Name": "learn NetworkPolicy"}"#),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let created = json(&r);
    let id = created["Id"].as_str().unwrap().to_string();
    assert_eq!(created["Name"], "learn NetworkPolicy");
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 4);

    let r = call(addr, "POST", "/todos", Some(r#"{"Name": "second"}"#));
    let second = json(&r)["Id"].as_str().unwrap().to_string();
    let list = json(&call(addr, "GET", "/todos", None));
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["Id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&id.as_str()) && ids.contains(&second.as_str()));

    // Bad bodies.
    for body in [
        None,
        Some("not json"),
        Some("{}"),
        Some(r#"{"Name": 42}"#),
        Some(r#"{"Name": null}"#),
    ] {
        assert_eq!(call(addr, "POST", "/todos", body).status, 400, "{body:?}");
    }

    let r = call(addr, "DELETE", &format!("/todos/{id}"), None);
    assert_eq!((r.status, json(&r)), (200, serde_json::json!({"Id": id})));
    assert_eq!(
        call(addr, "DELETE", &format!("/todos/{id}"), None).status,
        404
    );
    assert_eq!(
        json(&call(addr, "GET", "/todos", None))
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Redis gone: readiness fails, data calls answer 500.
    drop(server);
    assert_eq!(call(addr, "GET", "/probe", None).status, 500);
    assert_eq!(call(addr, "GET", "/todos", None).status, 500);
    assert_eq!(
        call(addr, "POST", "/todos", Some(r#"{"Name": "x"}"#)).status,
        500
    );
    assert_eq!(
        call(addr, "DELETE", &format!("/todos/{second}"), None).status,
        500
    );
}
