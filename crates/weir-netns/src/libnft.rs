//! libnftables (Debian's `libnftables1`, what the `nft` command itself is built on), loaded
//! at run time: one parse-and-commit per script without starting a process, and a netlink
//! socket that stays open. Loaded with `dlopen` so that weir neither needs the `-dev`
//! package to build nor fails to start where the library is missing (the caller falls back
//! to the `nft` command).
//!
//! A [`Context`] is bound to the network namespace of the thread that created it (its
//! netlink socket is opened there) and is used from that thread only (it is not `Send`).

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::OnceLock;

type CtxNew = unsafe extern "C" fn(u32) -> *mut c_void;
type CtxFree = unsafe extern "C" fn(*mut c_void);
type CtxSetDryRun = unsafe extern "C" fn(*mut c_void, bool);
type CtxBuffer = unsafe extern "C" fn(*mut c_void) -> c_int;
type CtxGetBuffer = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type RunFromBuffer = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;

/// The library's entry points weir uses.
struct Library {
    ctx_new: CtxNew,
    ctx_free: CtxFree,
    set_dry_run: CtxSetDryRun,
    buffer_output: CtxBuffer,
    buffer_error: CtxBuffer,
    get_output: CtxGetBuffer,
    get_error: CtxGetBuffer,
    run_from_buffer: RunFromBuffer,
}

/// The soname Debian ships (`libnftables1`).
const SONAME: &CStr = c"libnftables.so.1";

fn load() -> Result<Library, String> {
    // SAFETY: dlopen of a fixed soname; the handle is never closed, so every symbol
    // taken from it stays valid for the life of the process.
    let handle = unsafe { libc::dlopen(SONAME.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if handle.is_null() {
        return Err(dl_error());
    }
    let sym = |name: &CStr| -> Result<*mut c_void, String> {
        // SAFETY: `handle` is a live handle from dlopen; `name` is NUL-terminated.
        let p = unsafe { libc::dlsym(handle, name.as_ptr()) };
        if p.is_null() {
            Err(format!("{}: {}", name.to_string_lossy(), dl_error()))
        } else {
            Ok(p)
        }
    };
    // SAFETY: each symbol is transmuted to the C signature libnftables declares for it
    // (nftables/libnftables.h, stable since 0.9).
    unsafe {
        Ok(Library {
            ctx_new: std::mem::transmute::<*mut c_void, CtxNew>(sym(c"nft_ctx_new")?),
            ctx_free: std::mem::transmute::<*mut c_void, CtxFree>(sym(c"nft_ctx_free")?),
            set_dry_run: std::mem::transmute::<*mut c_void, CtxSetDryRun>(sym(
                c"nft_ctx_set_dry_run",
            )?),
            buffer_output: std::mem::transmute::<*mut c_void, CtxBuffer>(sym(
                c"nft_ctx_buffer_output",
            )?),
            buffer_error: std::mem::transmute::<*mut c_void, CtxBuffer>(sym(
                c"nft_ctx_buffer_error",
            )?),
            get_output: std::mem::transmute::<*mut c_void, CtxGetBuffer>(sym(
                c"nft_ctx_get_output_buffer",
            )?),
            get_error: std::mem::transmute::<*mut c_void, CtxGetBuffer>(sym(
                c"nft_ctx_get_error_buffer",
            )?),
            run_from_buffer: std::mem::transmute::<*mut c_void, RunFromBuffer>(sym(
                c"nft_run_cmd_from_buffer",
            )?),
        })
    }
}

fn dl_error() -> String {
    // SAFETY: dlerror returns NULL or a NUL-terminated string valid until the next dl call
    // on this thread; it is copied at once.
    let e = unsafe { libc::dlerror() };
    if e.is_null() {
        "unknown dlopen error".into()
    } else {
        // SAFETY: non-null, NUL-terminated (above).
        unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
    }
}

fn library() -> Result<&'static Library, String> {
    static LIB: OnceLock<Result<Library, String>> = OnceLock::new();
    LIB.get_or_init(load).as_ref().map_err(Clone::clone)
}

/// Whether libnftables can be loaded here (and why not).
pub fn available() -> Result<(), String> {
    library().map(|_| ())
}

/// One `nft_ctx`: output and errors buffered, never printed.
pub struct Context {
    lib: &'static Library,
    ctx: *mut c_void,
}

/// What one script produced: its output (listings) or the library's error text.
pub type RunResult = Result<String, String>;

impl Context {
    /// A context in the calling thread's network namespace.
    pub fn new() -> Result<Context, String> {
        let lib = library()?;
        // SAFETY: NFT_CTX_DEFAULT (0) is the documented flag for a normal context.
        let ctx = unsafe { (lib.ctx_new)(0) };
        if ctx.is_null() {
            return Err("nft_ctx_new failed".into());
        }
        let context = Context { lib, ctx };
        // SAFETY: `ctx` is live; buffering only redirects the context's own streams.
        let (o, e) = unsafe { ((lib.buffer_output)(ctx), (lib.buffer_error)(ctx)) };
        if o != 0 || e != 0 {
            return Err("nft_ctx_buffer_output/error failed".into());
        }
        Ok(context)
    }

    /// Runs one script as one transaction (`nft -f`); `dry_run` only checks it (`nft -c`).
    pub fn run(&mut self, script: &str, dry_run: bool) -> RunResult {
        let text = CString::new(script).map_err(|_| "script contains a NUL byte".to_string())?;
        // SAFETY: `ctx` is live and used by this thread only (Context is not Send); `text`
        // outlives the call; the returned buffers are copied before the next library call.
        unsafe {
            (self.lib.set_dry_run)(self.ctx, dry_run);
            let rc = (self.lib.run_from_buffer)(self.ctx, text.as_ptr());
            let out = take(self.lib.get_output, self.ctx);
            let err = take(self.lib.get_error, self.ctx);
            if rc == 0 {
                Ok(out)
            } else if err.trim().is_empty() {
                Err(format!("libnftables failed (code {rc})"))
            } else {
                Err(err.trim().to_string())
            }
        }
    }
}

/// Copies a buffer the library owns.
///
/// # Safety
/// `get` must be one of the library's buffer getters and `ctx` a live context.
unsafe fn take(get: CtxGetBuffer, ctx: *mut c_void) -> String {
    // SAFETY: per the contract above; the result is NULL or NUL-terminated.
    let p = unsafe { get(ctx) };
    if p.is_null() {
        String::new()
    } else {
        // SAFETY: non-null, NUL-terminated, valid until the next call on `ctx`.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: `ctx` came from nft_ctx_new and is freed exactly once.
        unsafe { (self.lib.ctx_free)(self.ctx) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_context_checks_scripts_without_root_and_reports_errors() {
        // The library is on every machine weir's tests run on (the setup installs nftables).
        let mut ctx = Context::new().expect("libnftables loads");
        let bad = ctx.run("table inet weir { chain c { nonsense } }", true);
        let err = bad.expect_err("a syntax error is an error");
        assert!(err.contains("syntax error"), "{err}");
        assert!(ctx.run("ta\0ble", true).unwrap_err().contains("NUL"));
    }
}
