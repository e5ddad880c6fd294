//! Faults in native code (SIGILL, SIGSEGV, SIGBUS, SIGFPE): a handler that
//! says what happened, which CPU path was in use and how to force another,
//! then exits with 128 + the signal's number instead of dying silently.
//!
//! A signal handler may do almost nothing safely, so the work that needs
//! more (the TUI putting the terminal back and saving the conversation) is
//! done by hooks on a watcher thread that the handler wakes through a pipe
//! and waits for, a few seconds at most. The handler itself only writes
//! text prepared beforehand and exits.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// The signals handled.
pub const SIGNALS: [i32; 4] = [libc::SIGILL, libc::SIGSEGV, libc::SIGBUS, libc::SIGFPE];

/// How long the handler waits for the hooks.
const HOOKS_TIMEOUT: Duration = Duration::from_secs(4);

/// The signal's name and what it means, e.g. "illegal instruction (SIGILL)".
pub fn describe(signal: i32) -> String {
    static_description(signal).map_or_else(|| format!("signal {signal}"), str::to_string)
}

fn static_description(signal: i32) -> Option<&'static str> {
    Some(match signal {
        libc::SIGILL => "illegal instruction (SIGILL)",
        libc::SIGSEGV => "segmentation fault (SIGSEGV)",
        libc::SIGBUS => "bus error (SIGBUS)",
        libc::SIGFPE => "arithmetic exception (SIGFPE)",
        libc::SIGABRT => "abort (SIGABRT)",
        libc::SIGKILL => "killed (SIGKILL)",
        _ => return None,
    })
}

type Hook = Box<dyn Fn(i32) + Send + Sync>;

static HOOKS: Mutex<Vec<Hook>> = Mutex::new(Vec::new());
static INSTALLED: AtomicBool = AtomicBool::new(false);
static CRASHING: AtomicBool = AtomicBool::new(false);
/// The watcher's pipes: the handler writes the signal to WAKE, the watcher
/// answers on DONE once the hooks ran.
static WAKE: AtomicI32 = AtomicI32::new(-1);
static DONE: AtomicI32 = AtomicI32::new(-1);
/// Text written after the signal's description (the CPU path and how to
/// change it), prepared outside the handler.
static CONTEXT: AtomicPtr<String> = AtomicPtr::new(std::ptr::null_mut());
/// Bytes that put a terminal back (written by the handler when a hook did
/// not finish in time), and the terminal settings to restore.
static TERMINAL: AtomicPtr<(Vec<u8>, libc::termios)> = AtomicPtr::new(std::ptr::null_mut());

/// Installs the handler for [`SIGNALS`], once per process.
pub fn install() {
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return;
    }
    let mut wake = [-1; 2];
    let mut done = [-1; 2];
    // SAFETY: plain pipe creation into valid arrays.
    let piped = unsafe {
        libc::pipe2(wake.as_mut_ptr(), libc::O_CLOEXEC) == 0
            && libc::pipe2(done.as_mut_ptr(), libc::O_CLOEXEC) == 0
    };
    if piped {
        WAKE.store(wake[1], Ordering::SeqCst);
        DONE.store(done[0], Ordering::SeqCst);
        let (wake_read, done_write) = (wake[0], done[1]);
        let _ = std::thread::Builder::new()
            .name("o1-fault-watch".into())
            .spawn(move || watch(wake_read, done_write));
    }
    for signal in SIGNALS {
        // SAFETY: a handler of the right signature for SA_SIGINFO; the
        // alternate stack (Rust's threads have one) lets it run after a
        // stack overflow.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = handler as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// Runs `hook` (on a watcher thread) when a fault is being handled, before
/// the message and the exit; the handler waits for it a few seconds.
pub fn on_fault(hook: impl Fn(i32) + Send + Sync + 'static) {
    if let Ok(mut hooks) = HOOKS.lock() {
        hooks.push(Box::new(hook));
    }
}

/// Sets the text the message ends with (which CPU path ran, how to change it).
pub fn set_context(text: String) {
    let new = Box::into_raw(Box::new(text));
    // The old text is leaked: the handler may be reading it.
    CONTEXT.store(new, Ordering::SeqCst);
}

/// Tells the handler how to put the terminal back if a hook does not
/// (`None`: the terminal is the user's again).
pub fn set_terminal_restore(restore: Option<(Vec<u8>, libc::termios)>) {
    let new = restore.map_or(std::ptr::null_mut(), |r| Box::into_raw(Box::new(r)));
    TERMINAL.store(new, Ordering::SeqCst);
}

fn watch(wake: RawFd, done: RawFd) {
    let mut byte = [0u8; 1];
    // SAFETY: reading one byte into a valid buffer.
    if unsafe { libc::read(wake, byte.as_mut_ptr().cast(), 1) } != 1 {
        return;
    }
    let signal = i32::from(byte[0]);
    if let Ok(hooks) = HOOKS.lock() {
        for hook in hooks.iter() {
            hook(signal);
        }
    }
    // SAFETY: writing one byte from a valid buffer.
    unsafe { libc::write(done, byte.as_ptr().cast(), 1) };
}

extern "C" fn handler(signal: i32, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // A second fault (another thread, or a hook) waits for the first to exit.
    if CRASHING.swap(true, Ordering::SeqCst) {
        loop {
            // SAFETY: pause is async-signal-safe.
            unsafe { libc::pause() };
        }
    }
    let wake = WAKE.load(Ordering::SeqCst);
    let done = DONE.load(Ordering::SeqCst);
    if wake >= 0 && done >= 0 {
        let byte = [signal as u8];
        // SAFETY: write and poll are async-signal-safe; the buffers are valid.
        unsafe {
            if libc::write(wake, byte.as_ptr().cast(), 1) == 1 {
                let mut fd = libc::pollfd {
                    fd: done,
                    events: libc::POLLIN,
                    revents: 0,
                };
                libc::poll(&mut fd, 1, HOOKS_TIMEOUT.as_millis() as i32);
            }
        }
    }
    let terminal = TERMINAL.load(Ordering::SeqCst);
    if !terminal.is_null() {
        // SAFETY: set once from a leaked box and never freed.
        let (bytes, termios) = unsafe { &*terminal };
        write_all(libc::STDOUT_FILENO, bytes);
        // SAFETY: tcsetattr is async-signal-safe; termios is valid.
        unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, termios) };
    }
    write_all(libc::STDERR_FILENO, b"\no1: crashed: ");
    write_all(
        libc::STDERR_FILENO,
        static_description(signal)
            .unwrap_or("fatal signal")
            .as_bytes(),
    );
    write_all(
        libc::STDERR_FILENO,
        b" in native code (llama.cpp or a library)\n",
    );
    let context = CONTEXT.load(Ordering::SeqCst);
    if !context.is_null() {
        // SAFETY: set from a leaked box and never freed.
        write_all(libc::STDERR_FILENO, unsafe { &*context }.as_bytes());
    }
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(128 + signal) };
}

fn write_all(fd: RawFd, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: write is async-signal-safe; the buffer is valid.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n <= 0 {
            return;
        }
        bytes = &bytes[n as usize..];
    }
}

/// Executes an illegal instruction: a real SIGILL, as a CPU raises it.
pub fn illegal_instruction() -> ! {
    // SAFETY: the instruction only traps.
    unsafe {
        #[cfg(target_arch = "x86_64")]
        std::arch::asm!("ud2");
        #[cfg(target_arch = "aarch64")]
        std::arch::asm!("udf #0");
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        libc::raise(libc::SIGILL);
    }
    unreachable!("an illegal instruction returned")
}

/// The environment variable that injects a fault: `SIGILL`, `SIGSEGV`,
/// `SIGBUS` or `SIGFPE`, optionally `@PLACE` (see [`inject_at`]).
pub const INJECT_ENV: &str = "O1_INJECT_FAULT";

/// Raises the fault named in [`INJECT_ENV`] if it names this `place` (or
/// no place): how the tests check what every command does on a fault.
/// Places: `backend` (llama.cpp started), `load` (a model's weights
/// loaded), `decode` (the first decode of a turn or benchmark), `quantize`
/// (a conversion's first tensor).
pub fn inject_at(place: &str) {
    static SPEC: std::sync::OnceLock<Option<(String, String)>> = std::sync::OnceLock::new();
    let spec = SPEC.get_or_init(|| {
        let spec = std::env::var(INJECT_ENV).ok()?;
        let (signal, at) = spec.split_once('@').unwrap_or((spec.as_str(), ""));
        Some((signal.to_string(), at.to_string()))
    });
    let Some((signal, at)) = spec else {
        return;
    };
    if !at.is_empty() && at != place {
        return;
    }
    match signal.as_str() {
        "SIGILL" => illegal_instruction(),
        "SIGSEGV" => {
            // SAFETY: none: this is the fault asked for.
            unsafe { std::ptr::write_volatile(std::ptr::null_mut::<u64>(), 1) };
        }
        "SIGBUS" => bus_error(),
        "SIGFPE" => {
            // SAFETY: raising a signal at the current thread.
            unsafe { libc::raise(libc::SIGFPE) };
        }
        _ => {}
    }
}

/// Reads a mapped page past the end of an empty file: a real SIGBUS.
fn bus_error() {
    let Ok(file) = tempfile_in_tmp() else {
        // SAFETY: raising a signal at the current thread.
        unsafe { libc::raise(libc::SIGBUS) };
        return;
    };
    use std::os::fd::AsRawFd;
    // SAFETY: maps one page of an empty file; the read of it is the fault.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        );
        if p != libc::MAP_FAILED {
            std::ptr::read_volatile(p.cast::<u8>());
        }
        libc::raise(libc::SIGBUS);
    }
}

fn tempfile_in_tmp() -> std::io::Result<std::fs::File> {
    let path = std::env::temp_dir().join(format!("o1-bus-{}", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)?;
    let _ = std::fs::remove_file(&path);
    Ok(file)
}
