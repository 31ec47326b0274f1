//! The lesson's todos API: the logic tier of the multi-tier app, backed by Redis (the data
//! tier). Behaves like the lesson's Flask app:
//! - `GET /probe` → 200 `success` when Redis answers `INFO`, 500 otherwise (readiness);
//! - `GET /todos` → JSON list of `{"Id","Name"}`;
//! - `POST /todos` with `{"Name": "<string>"}` → `{"Id","Name"}`, Id a new UUID; 400 when
//!   the body is missing or not JSON, has no Name, or Name is not a string;
//! - `DELETE /todos/{id}` → `{"Id"}`, 404 when absent;
//! - 500 whenever Redis cannot be reached.
//!
//! Todos live in one Redis hash, `todos`: field = Id, value = Name.

pub mod client;

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use redis::AsyncCommands;
use serde_json::{json, Value};

const KEY: &str = "todos";
/// How long a request waits for Redis before answering 500: a dropped packet (policy!)
/// must not hang the API.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct App {
    redis: redis::Client,
}

impl App {
    /// `url` like `redis://redis-demo:6379`. Nothing is connected until a request needs it.
    pub fn new(url: &str) -> anyhow::Result<App> {
        Ok(App {
            redis: redis::Client::open(url)?,
        })
    }

    pub fn router(self) -> Router {
        Router::new()
            .route("/probe", get(probe))
            .route("/todos", get(list).post(create))
            .route("/todos/{id}", delete(remove))
            .with_state(self)
    }

    async fn connection(&self) -> Result<redis::aio::MultiplexedConnection, Failure> {
        tokio::time::timeout(REDIS_TIMEOUT, self.redis.get_multiplexed_async_connection())
            .await
            .map_err(|_| Failure::Redis("timed out connecting to Redis".into()))?
            .map_err(|e| Failure::Redis(e.to_string()))
    }
}

enum Failure {
    Redis(String),
    BadRequest(&'static str),
    NotFound,
}

impl From<redis::RedisError> for Failure {
    fn from(e: redis::RedisError) -> Self {
        Failure::Redis(e.to_string())
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        match self {
            Failure::Redis(e) => {
                (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"error": e}))).into_response()
            }
            Failure::BadRequest(e) => {
                (StatusCode::BAD_REQUEST, Json(json!({"error": e}))).into_response()
            }
            Failure::NotFound => (
                StatusCode::NOT_FOUND,
                Json(json!({"error": "no such todo"})),
            )
                .into_response(),
        }
    }
}

async fn with_timeout<T>(
    f: impl std::future::Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    tokio::time::timeout(REDIS_TIMEOUT, f)
        .await
        .map_err(|_| Failure::Redis("Redis did not answer in time".into()))?
}

async fn probe(State(app): State<App>) -> Result<&'static str, Failure> {
    with_timeout(async {
        let mut c = app.connection().await?;
        let _: String = redis::cmd("INFO").query_async(&mut c).await?;
        Ok("success")
    })
    .await
}

async fn list(State(app): State<App>) -> Result<Json<Value>, Failure> {
    with_timeout(async {
        let mut c = app.connection().await?;
        let all: Vec<(String, String)> = c.hgetall(KEY).await?;
        let mut todos: Vec<Value> = all
            .into_iter()
            .map(|(id, name)| json!({"Id": id, "Name": name}))
            .collect();
        todos.sort_by(|a, b| a["Id"].as_str().cmp(&b["Id"].as_str()));
        Ok(Json(Value::Array(todos)))
    })
    .await
}

async fn create(State(app): State<App>, body: axum::body::Bytes) -> Result<Json<Value>, Failure> {
    let value: Value =
        serde_json::from_slice(&body).map_err(|_| Failure::BadRequest("body must be JSON"))?;
    let name = match value.get("Name") {
        None => return Err(Failure::BadRequest("Name is required")),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(Failure::BadRequest("Name must be a string")),
    };
    let id = uuid::Uuid::new_v4().to_string();
    with_timeout(async {
        let mut c = app.connection().await?;
        let _: () = c.hset(KEY, &id, &name).await?;
        Ok(Json(json!({"Id": id, "Name": name})))
    })
    .await
}

async fn remove(State(app): State<App>, Path(id): Path<String>) -> Result<Json<Value>, Failure> {
    with_timeout(async {
        let mut c = app.connection().await?;
        let removed: i64 = c.hdel(KEY, &id).await?;
        if removed == 0 {
            return Err(Failure::NotFound);
        }
        Ok(Json(json!({"Id": id})))
    })
    .await
}
