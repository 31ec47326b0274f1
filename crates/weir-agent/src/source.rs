//! The directory source: every manifest file read on its own, the last good version of a
//! file kept when a new one is invalid, and an inotify watcher that says when to look again.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;

use weir_manifest::{LoadError, LoadOptions, Source};
use weir_model::Cluster;

/// Items (files, or API objects as JSON) validated one by one: an item's last version that
/// loaded on its own is kept when its current one is invalid, so one bad object never
/// changes what is enforced for the others.
#[derive(Default)]
pub struct Items {
    options: LoadOptions,
    good: BTreeMap<String, String>,
    /// Items whose current version is invalid, with the first error.
    pub invalid: BTreeMap<String, String>,
}

impl Items {
    pub fn new(options: LoadOptions) -> Self {
        Items {
            options,
            ..Default::default()
        }
    }

    /// Replaces the item set with `current` (name → text) and loads the good versions together.
    pub fn update(&mut self, current: BTreeMap<String, String>) -> Result<Cluster, LoadError> {
        self.good.retain(|k, _| current.contains_key(k));
        self.invalid.clear();
        for (name, text) in current {
            if self.good.get(&name) == Some(&text) {
                continue;
            }
            match weir_manifest::load_str(&name, &text, self.options) {
                Ok(_) => {
                    self.good.insert(name, text);
                }
                Err(e) => {
                    let first = match &e {
                        LoadError::Invalid(d) => {
                            d.first().map(|d| d.to_string()).unwrap_or_default()
                        }
                        other => other.to_string(),
                    };
                    self.invalid.insert(name, first);
                }
            }
        }
        let sources: Vec<Source> = self
            .good
            .iter()
            .map(|(n, t)| Source {
                name: n.clone(),
                text: t.clone(),
            })
            .collect();
        Ok(weir_manifest::load(&sources, self.options)?.cluster)
    }
}

/// A directory of manifests and what was last read from it.
pub struct DirSource {
    root: PathBuf,
    pub items: Items,
}

fn manifest_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            manifest_files(&p, out);
        } else if matches!(
            p.extension().and_then(|x| x.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            out.push(p);
        }
    }
}

impl DirSource {
    pub fn new(root: PathBuf, options: LoadOptions) -> Self {
        DirSource {
            root,
            items: Items::new(options),
        }
    }

    /// Re-reads the directory: valid files replace their last good version, invalid ones
    /// keep it (and are listed in `items.invalid`), deleted files are dropped.
    pub fn load(&mut self) -> Result<Cluster, LoadError> {
        let mut files = Vec::new();
        manifest_files(&self.root, &mut files);
        let mut current = BTreeMap::new();
        let mut unreadable = Vec::new();
        for f in files {
            let name = f.display().to_string();
            match std::fs::read_to_string(&f) {
                Ok(t) => {
                    current.insert(name, t);
                }
                Err(e) => unreadable.push((name, e.to_string())),
            }
        }
        let cluster = self.items.update(current);
        self.items.invalid.extend(unreadable);
        cluster
    }
}

/// Watches `root` (and its subdirectories) with inotify on a thread of its own; every
/// batch of events sends one message. Directories created later are watched on the next event.
pub fn watch(root: &Path, tx: Sender<()>) -> std::io::Result<()> {
    // SAFETY: plain inotify calls on an fd we own.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mask = libc::IN_CREATE
        | libc::IN_DELETE
        | libc::IN_MODIFY
        | libc::IN_CLOSE_WRITE
        | libc::IN_MOVED_FROM
        | libc::IN_MOVED_TO;
    let add_all = move |root: &Path| {
        let mut dirs = vec![root.to_path_buf()];
        let mut i = 0;
        while i < dirs.len() {
            if let Ok(entries) = std::fs::read_dir(&dirs[i]) {
                dirs.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
            }
            i += 1;
        }
        for d in dirs {
            if let Ok(c) = CString::new(d.as_os_str().as_bytes()) {
                // SAFETY: valid fd and NUL-terminated path.
                unsafe { libc::inotify_add_watch(fd, c.as_ptr(), mask) };
            }
        }
    };
    add_all(root);
    let root = root.to_path_buf();
    std::thread::Builder::new()
        .name("weir-inotify".into())
        .spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                // SAFETY: reading into our buffer from our fd.
                let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
                if n <= 0 {
                    if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                        continue;
                    }
                    return;
                }
                add_all(&root);
                if tx.send(()).is_err() {
                    return;
                }
            }
        })?;
    Ok(())
}
