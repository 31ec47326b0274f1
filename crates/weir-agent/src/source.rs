//! The directory source: every manifest file read on its own, the last good version of a
//! file kept when a new one is invalid or unreadable, and an inotify watcher that says when
//! to look again.
//!
//! What the directory may hold (it is input, so every part of it may be hostile):
//! - `*.yaml`, `*.yml`, `*.json` regular files (symlinks to them are followed; a file
//!   reached twice is read once). Anything else named so (a FIFO, a device, a dangling
//!   link) is reported and its last good version kept; nothing blocks on it.
//! - Entries whose name starts with `.` are skipped: editors' and atomic writers' temporary
//!   files, and Kubernetes ConfigMap/Secret mounts' `..data` / `..2024_…` directories, whose
//!   files the mount also links at the top level.
//! - Directories are walked once each (symlink loops end there).
//! - The write convention: write a new version elsewhere (or under a dot-name) and
//!   `rename(2)` it into place. A file still open for writing (seen modified and not yet
//!   closed, for at most [`IN_PROGRESS_LIMIT`]) keeps its last good version until closed, so
//!   a half-written file (`- from:` cut short means "from everywhere") is never enforced.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weir_manifest::{Decoded, LoadError, LoadOptions, NamedText};
use weir_model::Cluster;

/// Largest manifest file read; a bigger one is reported and its last good version kept.
pub const MAX_FILE_BYTES: u64 = 64 << 20;
/// How long a file seen being written (modified, not yet closed) is left alone.
pub const IN_PROGRESS_LIMIT: Duration = Duration::from_secs(10);
/// At most one write of the state file per this long (the last change is written at the
/// next tick after it).
pub const SAVE_EVERY: Duration = Duration::from_secs(1);
/// Longest error kept per item (a hostile file can make very long messages).
const MAX_ERROR_BYTES: usize = 1024;

/// Why the source cannot be used now. The kernel keeps what it has meanwhile.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Not every resource has been listed yet (the Kubernetes source at start): not a failure.
    #[error("waiting for the first list of every resource")]
    NotYet,
    /// The source itself is gone or unreadable (a deleted or unreadable directory).
    #[error("{0}")]
    Unavailable(String),
    /// Some item is invalid and no last good version of it is known (a restart without a
    /// state directory): programming without it could open what it closed.
    #[error("refusing to program: {item} is invalid ({why}) and no last good version of it is known; fix it, or run with --state-dir so the last good state survives restarts")]
    NoLastGood { item: String, why: String },
    /// The good versions together do not load (e.g. the same object in two files).
    #[error(transparent)]
    Load(#[from] LoadError),
}

/// An item's current state as read from the source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Current {
    Text(String),
    /// Present but not readable as a manifest (why): its last good version is kept.
    Unreadable(String),
    /// Being written: its last good version is kept, and a new item waits.
    InProgress,
    /// As it was when last read (the directory source knows without reading it).
    Unchanged,
}

/// Items (files, or API objects as JSON) validated one by one: an item's last version that
/// loaded on its own is kept when its current one is invalid, so one bad object never
/// changes what is enforced for the others.
#[derive(Default)]
pub struct Items {
    options: LoadOptions,
    good: BTreeMap<String, String>,
    /// Each good item decoded (the same keys as `good`): a change re-decodes only the
    /// items that changed.
    decoded: BTreeMap<String, Decoded>,
    /// Good items holding workloads.
    workloads: usize,
    /// How many good items hold an object of each identity (`Kind/namespace/name`): more
    /// than one is a duplicate the whole cluster is refused for.
    holders: HashMap<String, usize>,
    /// The good state changed since it was last persisted, which was then.
    unsaved: bool,
    saved_at: Option<Instant>,
    /// Whether `good` is the last good state: after a successful update, or as loaded from
    /// the state directory. Before that, an invalid item's last good version is unknown.
    known: bool,
    /// Where the last good state is persisted (`--state-dir`), if anywhere.
    state_file: Option<PathBuf>,
    /// This writer's temporary file for the state file: random, so that agents sharing
    /// the directory never share it — not even two in PID namespaces of their own, where
    /// each is PID 1.
    state_tmp: Option<PathBuf>,
    /// Items whose current version is invalid, with the first error.
    pub invalid: BTreeMap<String, String>,
    /// Items that became invalid (or changed error) in the last update: logged once each.
    pub newly_invalid: Vec<String>,
}

/// An item whose good version changed: the one before, decoded (`None`: none), and
/// whether it has one now ([`Items::decoded`]).
#[derive(Clone, Debug)]
pub struct Change {
    pub name: String,
    pub before: Option<Decoded>,
    pub after: bool,
}

/// The entries of `map` whose keys start with `prefix`, in key order: a range of the map, so
/// one kind of `Kind/namespace/name` keys costs what it holds, not what the map holds.
pub fn with_prefix<'a, V>(
    map: &'a BTreeMap<String, V>,
    prefix: &'a str,
) -> impl Iterator<Item = (&'a String, &'a V)> + 'a {
    map.range(prefix.to_string()..)
        .take_while(move |(k, _)| k.starts_with(prefix))
}

/// The state file's format.
#[derive(serde::Serialize, serde::Deserialize)]
struct Persisted {
    version: u32,
    items: BTreeMap<String, String>,
}

fn shorten(s: String) -> String {
    if s.len() > MAX_ERROR_BYTES {
        format!(
            "{}… ({} bytes)",
            weir_model::prefix(&s, MAX_ERROR_BYTES),
            s.len()
        )
    } else {
        s
    }
}

impl Items {
    pub fn new(options: LoadOptions) -> Self {
        Items {
            options,
            ..Default::default()
        }
    }

    /// Persists the last good state in `dir/name` and starts from what is there: the
    /// last good state survives restarts (a file invalid at restart keeps the version
    /// enforced before). A missing file means a first start: nothing was good before.
    pub fn with_state(
        options: LoadOptions,
        dir: &Path,
        name: &str,
    ) -> Result<Self, std::io::Error> {
        std::fs::create_dir_all(dir)?;
        let file = dir.join(name);
        let mut items = Items::new(options);
        match std::fs::read(&file) {
            Ok(bytes) => {
                let p: Persisted = serde_json::from_slice(&bytes).map_err(|e| {
                    std::io::Error::other(format!("{}: corrupt state file: {e}", file.display()))
                })?;
                // A persisted item that no longer decodes (an older weir's state) stays
                // good but undecoded: loading fails until its current version replaces it.
                for (name, text) in p.items {
                    let source = NamedText { name, text };
                    match weir_manifest::decode(&source, options) {
                        Ok(d) => items.put_good(source, d),
                        Err(_) => {
                            items.good.insert(source.name, source.text);
                        }
                    }
                }
                items.known = true;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => items.known = true,
            Err(e) => return Err(e),
        }
        items.state_tmp = Some(temporary_for(&file));
        items.state_file = Some(file);
        Ok(items)
    }

    /// The names of the items in the last good state.
    pub fn good_names(&self) -> impl Iterator<Item = &str> {
        self.good.keys().map(String::as_str)
    }

    /// Item `name`'s good version.
    pub fn good(&self, name: &str) -> Option<&str> {
        self.good.get(name).map(String::as_str)
    }

    /// The good items whose names start with `prefix`, with their texts, in name order.
    pub fn good_with_prefix<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        with_prefix(&self.good, prefix).map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Replaces the item set with `current` (a whole listing: items not in it are gone).
    pub fn update(
        &mut self,
        current: BTreeMap<String, Current>,
    ) -> Result<Vec<Change>, SourceError> {
        let gone: Vec<String> = self
            .good
            .keys()
            .chain(self.invalid.keys())
            .filter(|k| !current.contains_key(*k))
            .cloned()
            .collect();
        let mut changes: BTreeMap<String, Option<Current>> =
            gone.into_iter().map(|k| (k, None)).collect();
        changes.extend(current.into_iter().map(|(k, v)| (k, Some(v))));
        self.apply(changes)
    }

    /// Applies what changed: each named item is now this (`None`: gone). Returns the items
    /// whose good version changed. Work in proportion to the changes.
    pub fn apply(
        &mut self,
        changes: BTreeMap<String, Option<Current>>,
    ) -> Result<Vec<Change>, SourceError> {
        let mut out = Vec::new();
        let mut newly_invalid = Vec::new();
        for (name, now) in changes {
            let was_invalid = self.invalid.remove(&name);
            let text = match now {
                None => {
                    if self.good.remove(&name).is_some() {
                        let before = self.take_decoded(&name);
                        out.push(Change {
                            name,
                            before,
                            after: false,
                        });
                    }
                    continue;
                }
                Some(Current::InProgress) => continue,
                Some(Current::Unchanged) => {
                    if let Some(why) = was_invalid {
                        self.invalid.insert(name, why);
                    }
                    continue;
                }
                Some(Current::Unreadable(why)) => {
                    newly_invalid.extend(self.mark_invalid(name, shorten(why), was_invalid));
                    continue;
                }
                Some(Current::Text(text)) => text,
            };
            if self.good.get(&name) == Some(&text) {
                continue;
            }
            let source = NamedText { name, text };
            match weir_manifest::decode(&source, self.options) {
                Ok(d) => {
                    let before = self.take_decoded(&source.name);
                    let name = source.name.clone();
                    self.put_good(source, d);
                    out.push(Change {
                        name,
                        before,
                        after: true,
                    });
                }
                Err(e) => {
                    let first = match &e {
                        LoadError::Invalid(d) => {
                            d.first().map(|d| d.to_string()).unwrap_or_default()
                        }
                        other => other.to_string(),
                    };
                    newly_invalid.extend(self.mark_invalid(
                        source.name,
                        shorten(first),
                        was_invalid,
                    ));
                }
            }
        }
        self.newly_invalid = newly_invalid;
        if !self.known {
            if let Some((item, why)) = self
                .invalid
                .iter()
                .find(|(k, _)| !self.good.contains_key(*k))
            {
                return Err(SourceError::NoLastGood {
                    item: item.clone(),
                    why: why.clone(),
                });
            }
        }
        if !out.is_empty() {
            self.unsaved = true;
        }
        Ok(out)
    }

    /// Makes `source` an item's good version, `decoded` as it decodes.
    fn put_good(&mut self, source: NamedText, decoded: Decoded) {
        self.workloads += usize::from(decoded.has_workloads());
        for id in decoded.identities() {
            *self.holders.entry(id).or_insert(0) += 1;
        }
        self.decoded.insert(source.name.clone(), decoded);
        self.good.insert(source.name, source.text);
    }

    fn take_decoded(&mut self, name: &str) -> Option<Decoded> {
        let d = self.decoded.remove(name)?;
        self.workloads -= usize::from(d.has_workloads());
        for id in d.identities() {
            if let Some(n) = self.holders.get_mut(&id) {
                *n -= 1;
                if *n == 0 {
                    self.holders.remove(&id);
                }
            }
        }
        Some(d)
    }

    /// Records why item `name` is invalid; returns its name when that is news (it was not
    /// invalid, or for another reason).
    fn mark_invalid(&mut self, name: String, why: String, was: Option<String>) -> Option<String> {
        let news = was.as_ref() != Some(&why);
        self.invalid.insert(name.clone(), why);
        news.then_some(name)
    }

    /// An item's good version, decoded.
    pub fn decoded(&self, name: &str) -> Option<&Decoded> {
        self.decoded.get(name)
    }

    /// How many good items hold an object of this identity (`Kind/namespace/name`).
    pub fn holders(&self, identity: &str) -> usize {
        self.holders.get(identity).copied().unwrap_or(0)
    }

    /// Whether some good item holds workloads (their pods fold into them across items, so
    /// a pod's change is not a change of that pod alone).
    pub fn has_workloads(&self) -> bool {
        self.workloads > 0
    }

    /// The cluster from every item's good version. The first success makes the good state
    /// the last good state (an item invalid later keeps it).
    pub fn cluster(&mut self) -> Result<Cluster, SourceError> {
        if let Some((name, text)) = self
            .good
            .iter()
            .find(|(k, _)| !self.decoded.contains_key(*k))
        {
            let source = NamedText {
                name: name.clone(),
                text: text.clone(),
            };
            weir_manifest::decode(&source, self.options)?;
        }
        let cluster = weir_manifest::assemble(self.decoded.values())?.cluster;
        self.known = true;
        self.save();
        Ok(cluster)
    }

    /// Persists the good state when it changed and the last write is a second old: a
    /// write is the whole state, so a burst of events writes it once.
    pub fn save_if_due(&mut self) {
        if self.unsaved && self.known && self.saved_at.is_none_or(|t| t.elapsed() >= SAVE_EVERY) {
            self.save();
        }
    }

    fn save(&mut self) {
        self.persist();
        self.unsaved = false;
        self.saved_at = Some(Instant::now());
    }

    /// Writes the good state atomically (a temporary file of this writer's own, then
    /// rename), owner-only. Several agents may share one state directory (nodes of a
    /// test cluster on one machine share a hostPath): with one temporary name, a writer
    /// could truncate the file another had just renamed into place, leaving a torn state
    /// that refuses the next start.
    fn persist(&self) {
        let (Some(file), Some(tmp)) = (&self.state_file, &self.state_tmp) else {
            return;
        };
        let p = Persisted {
            version: 1,
            items: self.good.clone(),
        };
        let write = || -> std::io::Result<()> {
            // A leftover of an earlier write of ours is ours to replace.
            let _ = std::fs::remove_file(tmp);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(tmp)?;
            serde_json::to_writer(&mut f, &p)?;
            f.sync_all()?;
            std::fs::rename(tmp, file)
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(tmp);
            tracing::error!(file = %file.display(), error = %e, "could not persist the last good state");
        }
    }
}

/// A temporary name for writing `file` that no other writer uses: 64 random bits (a hash
/// under the standard library's random keys, fresh for every `RandomState`). Not the PID:
/// agents in containers are all PID 1.
fn temporary_for(file: &Path) -> PathBuf {
    use std::hash::BuildHasher;
    let random = std::collections::hash_map::RandomState::new().hash_one(());
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{random:016x}.tmp"));
    file.with_file_name(name)
}

/// Files being written, as the watcher sees them: path → when first seen modified.
pub type InProgress = Arc<Mutex<HashMap<PathBuf, Instant>>>;

/// A directory of manifests and what was last read from it.
pub struct DirSource {
    root: PathBuf,
    pub items: Items,
    pub in_progress: InProgress,
    /// The stamps of files read whole and settled: a file walked with the same stamp is
    /// not read again, so an event costs a walk, not a read of every file.
    read: HashMap<PathBuf, Stamp>,
    /// Files read whole so far.
    pub files_read: u64,
}

fn is_manifest_name(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|x| x.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

fn is_hidden(p: &Path) -> bool {
    p.file_name()
        .is_some_and(|n| n.as_bytes().first() == Some(&b'.'))
}

/// What a walk of the directory found.
#[derive(Default, Debug)]
pub struct Walk {
    pub dirs: Vec<PathBuf>,
    /// Manifest-named entries, each once per file (by device and inode), in path order.
    pub files: Vec<PathBuf>,
    /// What each file's target looked like when walked.
    stamps: HashMap<PathBuf, Stamp>,
    /// Manifest-named entries whose target cannot be examined (dangling links).
    pub broken: Vec<(PathBuf, String)>,
}

/// Walks `root`: every directory once (by device and inode, so symlink loops end), hidden
/// entries skipped. `Err` when `root` itself is not a readable directory.
pub fn walk(root: &Path) -> std::io::Result<Walk> {
    let meta = std::fs::metadata(root)?;
    if !meta.is_dir() {
        return Err(std::io::Error::other("not a directory"));
    }
    std::fs::read_dir(root)?;
    let mut out = Walk::default();
    let mut seen_dirs = HashSet::new();
    let mut seen_files = HashSet::new();
    let mut queue = vec![root.to_path_buf()];
    seen_dirs.insert((meta.dev(), meta.ino()));
    while let Some(dir) = queue.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut entries: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        entries.sort();
        out.dirs.push(dir);
        for p in entries {
            if is_hidden(&p) {
                continue;
            }
            match std::fs::metadata(&p) {
                Ok(m) if m.is_dir() => {
                    if seen_dirs.insert((m.dev(), m.ino())) {
                        queue.push(p);
                    }
                }
                Ok(m) if is_manifest_name(&p) => {
                    if seen_files.insert((m.dev(), m.ino())) {
                        out.stamps.insert(p.clone(), Stamp::of(&m));
                        out.files.push(p);
                    }
                }
                Ok(_) => {}
                Err(e) if is_manifest_name(&p) => out.broken.push((p, e.to_string())),
                Err(_) => {}
            }
        }
    }
    out.files.sort();
    Ok(out)
}

/// What tells a file's content changed without reading it: the file (device, inode), its
/// size, and both times — the status change time cannot be set from user space (every
/// write, rename onto it or time change moves it), so a writer cannot hide a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

/// A stamp is trusted only once its file has not changed for this long: the kernel's file
/// times are coarse (a tick), so a second write in the same tick with the same size would
/// leave the stamp as it was (git's "racily clean" files). Newer files are read again.
const SETTLED: Duration = Duration::from_secs(1);

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Stamp {
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }

    /// Whether both times are at least [`SETTLED`] before `now` (Unix seconds).
    fn settled(&self, now: i64) -> bool {
        let limit = now - SETTLED.as_secs() as i64;
        self.ctime.0 < limit && self.mtime.0 < limit
    }
}

/// Reads one manifest file without ever blocking on it (a FIFO), and only if it is a
/// regular file of bounded size in UTF-8. With the text, the stamp of the file read.
fn read_manifest(path: &Path) -> (Current, Option<Stamp>) {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path);
    let mut file = match file {
        Ok(f) => f,
        Err(e) => return (Current::Unreadable(format!("cannot open: {e}")), None),
    };
    let unreadable = |why: String| (Current::Unreadable(why), None);
    let stamp = match file.metadata() {
        Ok(m) if !m.is_file() => {
            return unreadable("not a regular file; skipped".into());
        }
        Ok(m) if m.len() > MAX_FILE_BYTES => {
            return unreadable(format!(
                "{} bytes: larger than the {MAX_FILE_BYTES}-byte limit",
                m.len()
            ));
        }
        Ok(m) => Stamp::of(&m),
        Err(e) => return unreadable(format!("cannot stat: {e}")),
    };
    let mut bytes = Vec::new();
    if let Err(e) = (&mut file).take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes) {
        return unreadable(format!("cannot read: {e}"));
    }
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return unreadable("grew past the size limit while being read".into());
    }
    match String::from_utf8(bytes) {
        Ok(t) => (Current::Text(t), Some(stamp)),
        Err(e) => unreadable(format!("not UTF-8 text: {}", e.utf8_error())),
    }
}

impl DirSource {
    pub fn new(root: PathBuf, items: Items) -> Self {
        DirSource {
            root,
            items,
            in_progress: InProgress::default(),
            read: HashMap::new(),
            files_read: 0,
        }
    }

    /// Re-reads the directory: valid files replace their last good version; invalid,
    /// unreadable and half-written ones keep it; deleted files are dropped. A missing or
    /// unreadable directory is an error, never an empty cluster.
    pub fn changes(&mut self) -> Result<Vec<Change>, SourceError> {
        let found = walk(&self.root).map_err(|e| {
            SourceError::Unavailable(format!(
                "directory {}: {e}; keeping what is enforced",
                self.root.display()
            ))
        })?;
        let writing: HashSet<PathBuf> = {
            let mut w = self.in_progress.lock().expect("in progress");
            w.retain(|_, since| since.elapsed() < IN_PROGRESS_LIMIT);
            w.keys().cloned().collect()
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let mut current = BTreeMap::new();
        let mut read = HashMap::new();
        for f in found.files {
            let walked = found.stamps.get(&f);
            let state = if writing.contains(&f) {
                Current::InProgress
            } else if walked.is_some() && self.read.get(&f) == walked {
                read.insert(f.clone(), *walked.expect("checked"));
                Current::Unchanged
            } else {
                let (state, stamp) = read_manifest(&f);
                self.files_read += 1;
                if let Some(stamp) = stamp.filter(|s| s.settled(now)) {
                    read.insert(f.clone(), stamp);
                }
                state
            };
            current.insert(f.display().to_string(), state);
        }
        self.read = read;
        for (f, why) in found.broken {
            current.insert(
                f.display().to_string(),
                Current::Unreadable(format!("cannot follow: {why}")),
            );
        }
        self.items.update(current)
    }
}

/// Watches `root` (and its subdirectories) with inotify on a thread of its own; every
/// batch of events sends one message. Files opened for writing are recorded in
/// `in_progress` until closed. Once a second the watch is re-established from `root`, so
/// a deleted, recreated or re-pointed (symlink) directory is picked up again.
pub fn watch(root: &Path, in_progress: InProgress, tx: Sender<()>) -> std::io::Result<()> {
    use weir_netns::inotify::*;
    let inotify = Inotify::new()?;
    let mask = IN_CREATE
        | IN_DELETE
        | IN_MODIFY
        | IN_CLOSE_WRITE
        | IN_MOVED_FROM
        | IN_MOVED_TO
        | IN_ATTRIB
        | IN_DELETE_SELF
        | IN_MOVE_SELF;
    let root = root.to_path_buf();
    let mut dirs: HashMap<i32, PathBuf> = HashMap::new();
    // Watches every directory under the root; the root's identity (device, inode) or None.
    let add_all =
        move |inotify: &Inotify, dirs: &mut HashMap<i32, PathBuf>| -> Option<(u64, u64)> {
            let found = walk(&root).ok()?;
            for d in found.dirs {
                if let Ok(wd) = inotify.add_watch(&d, mask) {
                    dirs.insert(wd, d);
                }
            }
            std::fs::metadata(&root).ok().map(|m| (m.dev(), m.ino()))
        };
    let mut identity = add_all(&inotify, &mut dirs);
    std::thread::Builder::new()
        .name("weir-inotify".into())
        .spawn(move || {
            let mut buf = [0u8; 16384];
            loop {
                let ready = match weir_netns::poll_readable(&[inotify.as_fd()], 1000) {
                    Ok(r) => r[0],
                    Err(_) => return,
                };
                if !ready {
                    // Quiet second: has the directory gone, come back or been re-pointed?
                    let now = add_all(&inotify, &mut dirs);
                    if now != identity {
                        identity = now;
                        if tx.send(()).is_err() {
                            return;
                        }
                    }
                    continue;
                }
                match inotify.read(&mut buf) {
                    Ok(events) => note_writes(&events, &dirs, &in_progress),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => return,
                }
                identity = add_all(&inotify, &mut dirs);
                if tx.send(()).is_err() {
                    return;
                }
            }
        })?;
    Ok(())
}

/// Records files with data written and not yet closed, from a batch of inotify events.
fn note_writes(
    events: &[weir_netns::inotify::Event<'_>],
    dirs: &HashMap<i32, PathBuf>,
    in_progress: &InProgress,
) {
    use weir_netns::inotify::*;
    let mut w = in_progress.lock().expect("in progress");
    for e in events {
        if e.name.is_empty() || e.mask & IN_ISDIR != 0 {
            continue;
        }
        let Some(dir) = dirs.get(&e.watch) else {
            continue;
        };
        let path = dir.join(std::ffi::OsStr::from_bytes(e.name));
        // Data written and not yet closed. (A bare create — a symlink, a FIFO, an empty
        // file — writes nothing: it is read as it is.)
        if e.mask & IN_MODIFY != 0 {
            w.entry(path).or_insert_with(Instant::now);
        } else if e.mask & (IN_CLOSE_WRITE | IN_DELETE | IN_MOVED_FROM) != 0 {
            w.remove(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    const NS: &str = "kind: Namespace\napiVersion: v1\nmetadata:\n  name: a\n";

    /// What a reconcile does with a whole listing: read it, then assemble the cluster.
    fn load(items: &mut Items, now: BTreeMap<String, Current>) -> Result<Cluster, SourceError> {
        items.update(now)?;
        items.cluster()
    }

    fn current(items: &[(&str, Current)]) -> BTreeMap<String, Current> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn unreadable_items_keep_their_last_good_version() {
        let mut items = Items::new(LoadOptions::default());
        let c = load(&mut items, current(&[("a.yaml", Current::Text(NS.into()))])).unwrap();
        assert_eq!(c.namespaces.len(), 1);
        for now in [
            Current::Unreadable("not UTF-8".into()),
            Current::Text("kind: [".into()),
            Current::InProgress,
        ] {
            let c = load(&mut items, current(&[("a.yaml", now.clone())])).unwrap();
            assert_eq!(c.namespaces.len(), 1, "{now:?}");
        }
        // Deleted: gone.
        let c = load(&mut items, BTreeMap::new()).unwrap();
        assert!(c.namespaces.is_empty());
    }

    #[test]
    fn an_invalid_item_without_a_known_last_good_version_blocks() {
        let mut items = Items::new(LoadOptions::default());
        let err = load(
            &mut items,
            current(&[
                ("a.yaml", Current::Text(NS.into())),
                ("b.yaml", Current::Text("kind: [".into())),
            ]),
        )
        .unwrap_err();
        assert!(matches!(err, SourceError::NoLastGood { ref item, .. } if item == "b.yaml"));
        // Once a state is known, a new invalid item is simply left out.
        let ok = current(&[("a.yaml", Current::Text(NS.into()))]);
        load(&mut items, ok).unwrap();
        load(
            &mut items,
            current(&[
                ("a.yaml", Current::Text(NS.into())),
                ("b.yaml", Current::Text("kind: [".into())),
            ]),
        )
        .unwrap();
        assert_eq!(items.newly_invalid, ["b.yaml"]);
        // The same error again is not news.
        load(
            &mut items,
            current(&[
                ("a.yaml", Current::Text(NS.into())),
                ("b.yaml", Current::Text("kind: [".into())),
            ]),
        )
        .unwrap();
        assert!(items.newly_invalid.is_empty());
    }

    #[test]
    fn the_last_good_state_survives_a_restart_in_the_state_dir() {
        let dir = std::env::temp_dir().join(format!("weir-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut items = Items::with_state(LoadOptions::default(), &dir, "dir.json").unwrap();
        load(&mut items, current(&[("a.yaml", Current::Text(NS.into()))])).unwrap();
        // A restart while a.yaml is broken: its persisted version is used.
        let mut again = Items::with_state(LoadOptions::default(), &dir, "dir.json").unwrap();
        let c = load(
            &mut again,
            current(&[("a.yaml", Current::Unreadable("EACCES".into()))]),
        )
        .unwrap();
        assert_eq!(c.namespaces.len(), 1);
        let mode = std::fs::metadata(dir.join("dir.json")).unwrap().mode();
        assert_eq!(mode & 0o077, 0, "state is owner-only");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Two writers of one state file (two agents on one machine's hostPath) never
    /// share a temporary file, and the state file is whole whenever it is read.
    #[test]
    fn writers_sharing_a_state_dir_never_tear_the_state() {
        let dir = std::env::temp_dir().join(format!("weir-state-2w-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let writer = |size: usize| {
            let mut items = Items::with_state(LoadOptions::default(), &dir, "k.json").unwrap();
            for i in 0..size {
                items.good.insert(format!("item-{i}"), "x".repeat(4096));
            }
            items
        };
        let (a, b) = (writer(50), writer(3));
        assert_ne!(a.state_tmp, b.state_tmp);
        let name = a
            .state_tmp
            .as_ref()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_string();
        assert!(
            !name.contains(&format!(".{}.", std::process::id())),
            "{name}: not the PID"
        );
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = [a, b]
            .into_iter()
            .map(|items| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        items.persist();
                    }
                })
            })
            .collect();
        let mut reads = 0;
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_millis(1500) {
            if let Ok(bytes) = std::fs::read(dir.join("k.json")) {
                let p: Result<Persisted, _> = serde_json::from_slice(&bytes);
                assert!(p.is_ok(), "a torn state file after {reads} reads");
                reads += 1;
            }
        }
        stop.store(true, Ordering::Relaxed);
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert!(reads > 10, "only {reads} reads");
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            left,
            vec![std::ffi::OsString::from("k.json")],
            "temporaries left"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Items restored from the state directory count like items read: a restored
    /// Deployment means pods are not changes of themselves alone.
    #[test]
    fn restored_items_count_their_workloads() {
        const DEPLOY: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: w, namespace: a}\nspec:\n  selector: {matchLabels: {app: w}}\n  template:\n    metadata: {labels: {app: w}}\n    spec: {containers: [{name: c, image: x}]}\n";
        let dir = std::env::temp_dir().join(format!("weir-state-w-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut items = Items::with_state(LoadOptions::default(), &dir, "s.json").unwrap();
        load(
            &mut items,
            current(&[("d.yaml", Current::Text(DEPLOY.into()))]),
        )
        .unwrap();
        assert!(items.has_workloads());
        let again = Items::with_state(LoadOptions::default(), &dir, "s.json").unwrap();
        assert!(again.has_workloads(), "restored, still a workload");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A directory of its own for one test, removed when it ends.
    struct Dir(PathBuf);

    impl Dir {
        fn new(tag: &str) -> Dir {
            let dir = std::env::temp_dir().join(format!("weir-src-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir(&dir).unwrap();
            Dir(dir)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn pod(labels: &str) -> String {
        format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: p, namespace: a, labels: {{{labels}}}}}\nspec: {{containers: [{{name: c, image: x}}]}}\nstatus: {{podIP: 10.0.0.2}}\n")
    }

    /// A file rewritten within the same tick with the same size would leave its stamp as it
    /// was: a file is read again until it has been still for a second, so the change is seen.
    #[test]
    fn a_file_changed_twice_in_a_tick_is_read_again() {
        let dir = Dir::new("racy");
        let file = dir.0.join("p.yaml");
        std::fs::write(&file, pod("t: aa")).unwrap();
        let mut source = DirSource::new(dir.0.clone(), Items::new(Default::default()));
        source.changes().unwrap();
        // Not trusted yet (here the file times are fine-grained, so the rewrite below
        // would be seen anyway; on a file system with coarse times only this saves it).
        assert!(!source.read.contains_key(&file));
        std::fs::write(&file, pod("t: bb")).unwrap(); // same size
        let changes = source.changes().unwrap();
        assert_eq!(changes.len(), 1, "the rewrite is seen");
        assert!(source.items.cluster().unwrap().endpoints[0].labels["t"] == "bb");
    }

    /// Once a file has been still for a second, walks that find it as it was do not read
    /// it again; any write changes its status time and it is read.
    #[test]
    fn a_settled_file_is_not_read_again_until_it_changes() {
        let dir = Dir::new("settled");
        let file = dir.0.join("p.yaml");
        std::fs::write(&file, pod("t: aa")).unwrap();
        std::fs::write(dir.0.join("ns.yaml"), NS).unwrap();
        std::thread::sleep(SETTLED + Duration::from_millis(1100));
        let mut source = DirSource::new(dir.0.clone(), Items::new(Default::default()));
        source.changes().unwrap();
        assert_eq!(source.files_read, 2);
        assert!(source.changes().unwrap().is_empty());
        assert_eq!(source.files_read, 2, "nothing read again");
        std::fs::write(&file, pod("t: bb")).unwrap();
        let changes = source.changes().unwrap();
        assert_eq!(source.files_read, 3, "the written file alone");
        assert_eq!(changes.len(), 1);
        // Replaced by another file under the same name: another inode, read.
        let other = dir.0.join("other.tmp");
        std::fs::write(&other, pod("t: cc")).unwrap();
        std::fs::rename(&other, &file).unwrap();
        assert_eq!(source.changes().unwrap().len(), 1);
        assert_eq!(source.files_read, 4);
    }

    #[test]
    fn long_errors_are_cut() {
        let mut items = Items::new(LoadOptions::default());
        items.known = true;
        let huge = "x".repeat(10 << 20);
        load(
            &mut items,
            current(&[("a.yaml", Current::Unreadable(huge))]),
        )
        .unwrap();
        assert!(items.invalid["a.yaml"].len() < 2 * MAX_ERROR_BYTES);
    }
}

/// Items held in memory: tests and benchmarks set and remove them between reconciles,
/// as watch events would.
#[derive(Default)]
pub struct MemorySource {
    pub items: Items,
    /// What changed since the last read (`None`: removed).
    pending: BTreeMap<String, Option<Current>>,
    /// What [`crate::Source::local_addresses`] answers for every node.
    pub node_addresses: Option<std::collections::HashSet<std::net::IpAddr>>,
}

impl MemorySource {
    pub fn new(items: Items) -> Self {
        MemorySource {
            items,
            ..Default::default()
        }
    }

    /// Adds or replaces item `name`.
    pub fn set(&mut self, name: impl Into<String>, text: impl Into<String>) {
        self.pending
            .insert(name.into(), Some(Current::Text(text.into())));
    }

    pub fn remove(&mut self, name: &str) {
        self.pending.insert(name.to_string(), None);
    }
}

impl crate::Source for MemorySource {
    fn changes(&mut self) -> Result<Vec<Change>, SourceError> {
        self.items.apply(std::mem::take(&mut self.pending))
    }
    fn items(&self) -> &Items {
        &self.items
    }
    fn items_mut(&mut self) -> &mut Items {
        &mut self.items
    }
    fn local_addresses(&self, _node: &str) -> Option<std::collections::HashSet<std::net::IpAddr>> {
        self.node_addresses.clone()
    }
}
