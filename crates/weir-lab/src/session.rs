//! A lab that cleans up after itself: taken down when its [`Session`] is dropped (the
//! command ended, failed or panicked) or on Ctrl-C / SIGTERM, unless asked to stay.

use std::collections::BTreeSet;
use std::ops::Deref;
use std::sync::{Mutex, Once};

use weir_model::Cluster;

use crate::host::{Host, RealHost};
use crate::{Lab, LabError, LabOptions};

/// Labs of this process that must go on interruption.
static LIVE: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
static HANDLER: Once = Once::new();

/// One Ctrl-C / SIGTERM handler for the process: every live session's lab goes down, then
/// the process exits with 130.
fn install_handler() {
    HANDLER.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            let names: Vec<String> = LIVE
                .lock()
                .map(|l| l.iter().cloned().collect())
                .unwrap_or_default();
            for name in names {
                eprintln!("\ninterrupted: taking lab {name} down");
                let _ = Lab::down(&name, &RealHost);
            }
            std::process::exit(130);
        });
    });
}

/// A lab that is up for as long as this value lives.
pub struct Session {
    lab: Lab,
    keep: bool,
}

impl Session {
    /// Brings the lab up (on the real host) and takes charge of taking it down.
    pub fn up(cluster: &Cluster, options: &LabOptions) -> Result<Session, LabError> {
        install_handler();
        LIVE.lock().expect("live labs").insert(options.name.clone());
        match Lab::up(cluster, options, &RealHost as &dyn Host) {
            Ok(lab) => Ok(Session { lab, keep: false }),
            Err(e) => {
                LIVE.lock().expect("live labs").remove(&options.name);
                Err(e)
            }
        }
    }

    /// Leaves the lab up when the session ends (`--keep`); Ctrl-C leaves it up too.
    pub fn keep(&mut self) {
        self.keep = true;
        LIVE.lock().expect("live labs").remove(&self.lab.state.name);
    }

    /// Takes the lab down now, reporting failure (dropping does the same, silently).
    pub fn down(mut self) -> Result<(), LabError> {
        self.keep = true; // nothing left for Drop to do
        LIVE.lock().expect("live labs").remove(&self.lab.state.name);
        Lab::down(&self.lab.state.name, &RealHost)
    }
}

impl Deref for Session {
    type Target = Lab;
    fn deref(&self) -> &Lab {
        &self.lab
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if !self.keep {
            LIVE.lock().map(|mut l| l.remove(&self.lab.state.name)).ok();
            let _ = Lab::down(&self.lab.state.name, &RealHost);
        }
    }
}
