//! The OS effects of building a lab, behind a trait: the real one runs `ip` and `sysctl`,
//! the fake records what would have run, so the plan is unit-tested without root.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use crate::LabError;

pub trait Host {
    /// Runs `ip` batch lines, in namespace `netns` or (None) in the caller's.
    fn ip_batch(&self, netns: Option<&str>, lines: &[String]) -> Result<(), LabError>;
    /// Sets sysctls (`key=value`) inside a namespace.
    fn sysctl(&self, netns: &str, settings: &[String]) -> Result<(), LabError>;
    /// Applies an nft script inside a namespace (lab-owned tables only).
    fn nft(&self, netns: &str, script: &str) -> Result<(), LabError>;
    /// Writes a lab-owned file, creating its directory.
    fn write_file(&self, path: &str, content: &str) -> Result<(), LabError>;
    /// Stops every process inside a namespace (apps the lab started there).
    fn kill_all_in(&self, netns: &str);
    /// Names under /run/netns.
    fn namespaces(&self) -> Vec<String>;
}

pub struct RealHost;

fn run(mut cmd: Command, stdin: Option<&str>, what: &str) -> Result<(), LabError> {
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| LabError::Command(format!("{what}: {e}")))?;
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(text.as_bytes())
            .map_err(|e| LabError::Command(format!("{what}: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| LabError::Command(format!("{what}: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(LabError::Command(format!(
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

impl Host for RealHost {
    fn ip_batch(&self, netns: Option<&str>, lines: &[String]) -> Result<(), LabError> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut cmd = Command::new("ip");
        if let Some(ns) = netns {
            cmd.args(["-n", ns]);
        }
        cmd.args(["-batch", "-"]);
        let what = format!("ip -batch in {}", netns.unwrap_or("the caller's namespace"));
        run(cmd, Some(&(lines.join("\n") + "\n")), &what)
    }

    fn sysctl(&self, netns: &str, settings: &[String]) -> Result<(), LabError> {
        let mut cmd = weir_netns::netns::command_in(Some(netns), "sysctl");
        cmd.args(["-q", "-w"]).args(settings);
        run(cmd, None, &format!("sysctl in {netns}"))
    }

    fn nft(&self, netns: &str, script: &str) -> Result<(), LabError> {
        let mut cmd = weir_netns::netns::command_in(Some(netns), "nft");
        cmd.args(["-f", "-"]);
        run(cmd, Some(script), &format!("nft in {netns}"))
    }

    fn write_file(&self, path: &str, content: &str) -> Result<(), LabError> {
        let path = std::path::Path::new(path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, content)?;
        Ok(())
    }

    fn kill_all_in(&self, netns: &str) {
        let pids = |signal: i32| {
            let out = Command::new("ip").args(["netns", "pids", netns]).output();
            let text = out
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            let pids: Vec<i32> = text
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect();
            for &pid in &pids {
                // A process inside a namespace this lab created.
                let _ = weir_netns::process::kill(pid, signal);
            }
            pids.len()
        };
        if pids(weir_netns::process::SIGTERM) == 0 {
            return;
        }
        for _ in 0..50 {
            std::thread::sleep(std::time::Duration::from_millis(20));
            if pids(0) == 0 {
                return;
            }
        }
        pids(weir_netns::process::SIGKILL);
    }

    fn namespaces(&self) -> Vec<String> {
        std::fs::read_dir("/run/netns")
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Records commands; never touches the machine.
#[derive(Default)]
pub struct FakeHost {
    pub log: Mutex<Vec<String>>,
    pub existing: Vec<String>,
}

impl Host for FakeHost {
    fn ip_batch(&self, netns: Option<&str>, lines: &[String]) -> Result<(), LabError> {
        let mut log = self.log.lock().unwrap();
        for l in lines {
            log.push(format!("[{}] ip {l}", netns.unwrap_or("-")));
        }
        Ok(())
    }
    fn sysctl(&self, netns: &str, settings: &[String]) -> Result<(), LabError> {
        self.log
            .lock()
            .unwrap()
            .push(format!("[{netns}] sysctl {}", settings.join(" ")));
        Ok(())
    }
    fn nft(&self, netns: &str, script: &str) -> Result<(), LabError> {
        self.log
            .lock()
            .unwrap()
            .push(format!("[{netns}] nft {script}"));
        Ok(())
    }
    fn write_file(&self, path: &str, content: &str) -> Result<(), LabError> {
        self.log
            .lock()
            .unwrap()
            .push(format!("write {path}: {content}"));
        Ok(())
    }
    fn kill_all_in(&self, netns: &str) {
        self.log
            .lock()
            .unwrap()
            .push(format!("kill all in {netns}"));
    }
    fn namespaces(&self) -> Vec<String> {
        self.existing.clone()
    }
}
