//! [`NftLib`]: the [`Nft`] trait over libnftables instead of the `nft` command — no process
//! per transaction, one netlink socket kept open. The library context lives on a worker
//! thread of its own inside the target namespace (a context is bound to the namespace it
//! was created in and must not move between threads); callers send it scripts.

use std::sync::mpsc;
use std::sync::Mutex;
use std::time::Duration;

use weir_netns::libnft::{Context, RunResult};

use crate::apply::{Nft, NftError, NFT_TIMEOUT};
use crate::TABLE;

struct Job {
    script: String,
    dry_run: bool,
    reply: mpsc::SyncSender<RunResult>,
}

/// libnftables in the caller's network namespace or in a named one (`/run/netns/NAME`).
pub struct NftLib {
    netns: Option<String>,
    worker: Mutex<Option<mpsc::Sender<Job>>>,
    timeout: Duration,
}

impl std::fmt::Debug for NftLib {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NftLib")
            .field("netns", &self.netns)
            .finish()
    }
}

impl NftLib {
    /// Starts the worker (entering `netns`) and creates its context there: an error when
    /// the library cannot be loaded or the namespace entered, so callers can fall back.
    pub fn new(netns: Option<String>) -> Result<NftLib, NftError> {
        let lib = NftLib {
            netns,
            worker: Mutex::new(None),
            timeout: NFT_TIMEOUT,
        };
        let tx = lib.start()?;
        *lib.worker.lock().expect("worker lock") = Some(tx);
        Ok(lib)
    }

    fn start(&self) -> Result<mpsc::Sender<Job>, NftError> {
        let (tx, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<(), String>>(1);
        let ns = match &self.netns {
            Some(name) => Some(
                std::fs::File::open(weir_netns::netns::path(name))
                    .map_err(|e| NftError::Unavailable(format!("namespace {name}: {e}")))?,
            ),
            None => None,
        };
        std::thread::Builder::new()
            .name("weir-libnft".into())
            .spawn(move || {
                let ctx = ns
                    .as_ref()
                    .map_or(Ok(()), weir_netns::netns::enter)
                    .map_err(|e| format!("entering the namespace: {e}"))
                    .and_then(|()| Context::new());
                let mut ctx = match ctx {
                    Ok(c) => {
                        let _ = ready_tx.send(Ok(()));
                        c
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                // Ends when the NftLib (the only sender) is dropped or abandons this worker.
                for job in rx {
                    let _ = job.reply.send(ctx.run(&job.script, job.dry_run));
                }
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(tx),
            Ok(Err(e)) => Err(NftError::Unavailable(e)),
            Err(_) => Err(NftError::Unavailable("the libnftables worker died".into())),
        }
    }

    fn call(&self, script: &str, dry_run: bool) -> Result<String, NftError> {
        let mut worker = self.worker.lock().expect("worker lock");
        if worker.is_none() {
            *worker = Some(self.start()?);
        }
        let (reply, answer) = mpsc::sync_channel(1);
        let job = Job {
            script: script.to_string(),
            dry_run,
            reply,
        };
        if worker.as_ref().expect("started").send(job).is_err() {
            *worker = None;
            return Err(NftError::Unavailable("the libnftables worker died".into()));
        }
        match answer.recv_timeout(self.timeout) {
            Ok(result) => result.map_err(NftError::Rejected),
            Err(_) => {
                // A call that hangs in the kernel cannot be killed like a process: abandon
                // that worker (it exits if the call ever returns) and start afresh next time.
                *worker = None;
                Err(NftError::Timeout(self.timeout))
            }
        }
    }
}

impl Nft for NftLib {
    fn run(&self, script: &str, check_only: bool) -> Result<(), NftError> {
        self.call(script, check_only).map(drop)
    }

    fn list(&self) -> Result<String, NftError> {
        match self.call(&format!("list table {TABLE}"), false) {
            Ok(listing) => Ok(listing),
            // Like `nft list` printing nothing: a missing table is an empty listing.
            Err(NftError::Rejected(e)) if e.contains("No such file or directory") => {
                Ok(String::new())
            }
            Err(e) => Err(e),
        }
    }
}
