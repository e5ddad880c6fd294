//! Sharing the CPU with other programs: fewer threads while they keep
//! cores busy, all of them again when they stop.
//!
//! llama.cpp's threads meet at a barrier after every operation, hundreds
//! of times a token. When another program keeps the cores busy, the kernel
//! runs o1's threads at different times and each barrier waits for the one
//! that is not running: two threads against a two-thread neighbour decode
//! at 0.27× their speed alone, where one thread keeps 0.58× (2 cores, 0.5B
//! q4_k_m, the neighbour in its own session as another app would be).
//!
//! So every half second of work o1 reads how much CPU the other programs
//! took on the cores it may use (`/proc/stat` less its own time) and uses
//! the cores they leave free. The measure does not depend on o1's own
//! thread count (a neighbour that gets a core while o1 uses one still shows
//! as a busy core), so the choice does not oscillate; while working it
//! changes only when the windows of the last second agree. The first window
//! (from the load) and one that spans a pause between turns decide at once,
//! so a turn starts with the right count.

use std::time::{Duration, Instant};

use llama_cpp_2::context::LlamaContext;
use llama_cpp_sys_2 as sys;

/// How long a measuring window lasts.
const WINDOW: Duration = Duration::from_millis(500);
/// How long the others' use must have asked for a new count, once working:
/// two windows in a row that agree, or one that lasted this long (a pause
/// between turns, when o1 took nothing and the others' use shows whole, or
/// a token slowed this much by too many threads).
const EVIDENCE: Duration = Duration::from_secs(1);
/// A window longer than this is too old to say anything about now: it only
/// starts the next one.
const FORGET: Duration = Duration::from_secs(30);

/// The thread count for `free` idle cores (cores less what other programs
/// use): the free cores rounded, at least one, at most `max`. A neighbour
/// using under half a core (a terminal, a music player) changes nothing.
pub fn threads_for(free: f64, max: usize) -> usize {
    (free.round().max(1.0) as usize).min(max)
}

/// CPU time counters, in clock ticks.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Counters {
    /// Busy time of the cores o1 may run on, every program's.
    pub busy: u64,
    /// o1's own (user and system) time.
    pub own: u64,
}

/// Decides the thread count from successive counters.
#[derive(Debug)]
pub struct Governor {
    max: usize,
    cores: usize,
    ticks_per_second: f64,
    current: usize,
    last: Option<(Instant, Counters)>,
    /// A count the last windows asked for, and for how long.
    pending: Option<(usize, Duration)>,
    /// Whether a window has decided since the measure (re)started.
    decided: bool,
    /// Other programs' use in the last window, in cores (for the log).
    pub others: f64,
}

impl Governor {
    /// `max` threads at most (the configured count), on `cores` cores.
    pub fn new(max: usize, cores: usize, ticks_per_second: f64) -> Self {
        Governor {
            max,
            cores: cores.max(1),
            ticks_per_second,
            current: max,
            last: None,
            pending: None,
            decided: false,
            others: 0.0,
        }
    }

    pub fn current(&self) -> usize {
        self.current
    }

    /// Called before a decode with the time and the counters (read only
    /// when [`Governor::due`] says so); returns a new thread count when
    /// it changes.
    pub fn observe(&mut self, now: Instant, counters: Counters) -> Option<usize> {
        let (then, before) = self.last.replace((now, counters))?;
        let elapsed = now.duration_since(then);
        if elapsed > FORGET || elapsed.is_zero() {
            self.pending = None;
            self.decided = false;
            return None;
        }
        let at_once = !self.decided || elapsed >= EVIDENCE;
        self.decided = true;
        let ticks = |n: u64| n as f64 / self.ticks_per_second;
        let busy = ticks(counters.busy.saturating_sub(before.busy));
        let own = ticks(counters.own.saturating_sub(before.own));
        self.others = ((busy - own) / elapsed.as_secs_f64()).max(0.0);
        let wanted = threads_for(self.cores as f64 - self.others, self.max);
        if wanted == self.current {
            self.pending = None;
            return None;
        }
        let agreed = match self.pending {
            Some((n, seen)) if n == wanted => seen + elapsed,
            _ => elapsed,
        };
        if agreed < EVIDENCE && !at_once {
            self.pending = Some((wanted, agreed));
            return None;
        }
        self.pending = None;
        self.current = wanted;
        Some(wanted)
    }

    /// Whether a window has passed since the last counters.
    pub fn due(&self, now: Instant) -> bool {
        self.last
            .is_none_or(|(then, _)| now.duration_since(then) >= WINDOW)
    }
}

/// Reads the counters of this process and of the cores it may run on.
pub struct CpuCounters {
    cpus: Vec<usize>,
}

impl CpuCounters {
    /// `None` where the kernel does not say (not Linux, no `/proc`).
    pub fn new() -> Option<Self> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let list = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?;
        let cpus = parse_cpu_list(list.trim())?;
        let me = CpuCounters { cpus };
        me.read()?;
        Some(me)
    }

    pub fn cores(&self) -> usize {
        self.cpus.len()
    }

    pub fn read(&self) -> Option<Counters> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let busy = busy_ticks(&stat, &self.cpus)?;
        let own = own_ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
        Some(Counters { busy, own })
    }
}

/// The thread count of one llama.cpp context, adapted before each decode.
pub struct CpuShare {
    context: *mut sys::llama_context,
    counters: CpuCounters,
    governor: Governor,
}

impl CpuShare {
    /// Adapts `ctx`'s threads (at most `max`); `None` where the counters
    /// cannot be read or the context's address cannot be had.
    pub fn new(ctx: &LlamaContext<'_>, max: usize) -> Option<Self> {
        let counters = CpuCounters::new()?;
        let context = raw_context(ctx)?;
        let mut governor = Governor::new(max, counters.cores(), ticks_per_second());
        // The first window starts now: the first decode after it decides.
        governor.observe(Instant::now(), counters.read()?);
        Some(CpuShare {
            context,
            counters,
            governor,
        })
    }

    /// Called before each decode of the context this was made for: every
    /// window, measures and sets the thread count if it changes.
    pub fn before_decode(&mut self) {
        let now = Instant::now();
        if !self.governor.due(now) {
            return;
        }
        let Some(counters) = self.counters.read() else {
            return;
        };
        if let Some(n) = self.governor.observe(now, counters) {
            tracing::debug!(
                threads = n,
                others = format_args!("{:.2}", self.governor.others),
                "other programs use {:.1} of {} cores: {n} threads",
                self.governor.others,
                self.counters.cores()
            );
            // SAFETY: the pointer is the live context this share belongs to
            // (its owner drops both together), and the engine's thread calls
            // this between decodes, never during one.
            unsafe { sys::llama_set_n_threads(self.context, n as i32, n as i32) };
        }
    }

    pub fn threads(&self) -> usize {
        self.governor.current()
    }
}

/// The llama.cpp context a `LlamaContext` wraps. llama-cpp-2 keeps it
/// private but prints it in its `Debug` form (`LlamaContext { context:
/// 0x… }`); the address read is checked against the context's own size.
fn raw_context(ctx: &LlamaContext<'_>) -> Option<*mut sys::llama_context> {
    let shown = format!("{ctx:?}");
    let hex = shown.split("context: 0x").nth(1)?;
    let hex: String = hex.chars().take_while(char::is_ascii_hexdigit).collect();
    let address = usize::from_str_radix(&hex, 16).ok()?;
    let context = address as *mut sys::llama_context;
    // SAFETY: only read when the text named an address; llama_n_ctx reads
    // one field of the context.
    (address != 0 && unsafe { sys::llama_n_ctx(context) } == ctx.n_ctx()).then_some(context)
}

/// Clock ticks per second of `/proc`'s counters.
pub fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if n > 0 {
        n as f64
    } else {
        100.0
    }
}

/// `0-3,8,10-11` → [0, 1, 2, 3, 8, 10, 11].
fn parse_cpu_list(list: &str) -> Option<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in list.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => cpus.extend(a.parse::<usize>().ok()?..=b.parse().ok()?),
            None => cpus.push(part.parse().ok()?),
        }
    }
    (!cpus.is_empty()).then_some(cpus)
}

/// The busy ticks (all but idle and iowait) of the listed cores' `cpuN`
/// lines of `/proc/stat`. Steal counts as busy: a core the hypervisor
/// gives to another machine is not free either.
fn busy_ticks(stat: &str, cpus: &[usize]) -> Option<u64> {
    let mut total = 0;
    let mut found = 0;
    for line in stat.lines() {
        // `cpuN` lines only: the first line (`cpu  …`) sums every core.
        let Some(rest) = line.strip_prefix("cpu") else {
            continue;
        };
        if !rest.starts_with(|c: char| c.is_ascii_digit()) {
            continue;
        }
        let mut fields = rest.split_ascii_whitespace();
        let Some(Ok(n)) = fields.next().map(str::parse::<usize>) else {
            continue;
        };
        if !cpus.contains(&n) {
            continue;
        }
        let values: Vec<u64> = fields.take(8).filter_map(|f| f.parse().ok()).collect();
        if values.len() < 8 {
            return None;
        }
        // user nice system idle iowait irq softirq steal
        total += values.iter().sum::<u64>() - values[3] - values[4];
        found += 1;
    }
    (found > 0).then_some(total)
}

/// utime + stime of `/proc/self/stat` (fields 14 and 15; the command name
/// in parentheses may hold spaces, so count after its closing one).
fn own_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_ascii_whitespace().collect();
    // After the name: state is field 3, so utime (14) is index 11.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    /// Feeds windows of 500 ms in which others use `others` cores and o1
    /// `own`; returns the thread count after each.
    fn run(g: &mut Governor, start: Instant, windows: &[(f64, f64)]) -> Vec<usize> {
        let mut c = Counters::default();
        let mut t = 0;
        g.observe(at(start, t), c);
        windows
            .iter()
            .map(|&(others, own)| {
                t += 500;
                // 100 ticks a second: half a second is 50 ticks per core.
                c.busy += ((others + own) * 50.0) as u64;
                c.own += (own * 50.0) as u64;
                g.observe(at(start, t), c);
                g.current()
            })
            .collect()
    }

    #[test]
    fn the_free_cores_decide_rounded_and_within_bounds() {
        assert_eq!(threads_for(2.0, 2), 2);
        assert_eq!(threads_for(1.6, 2), 2);
        assert_eq!(threads_for(1.4, 2), 1);
        assert_eq!(threads_for(0.0, 2), 1);
        assert_eq!(threads_for(7.0, 4), 4);
        assert_eq!(threads_for(5.2, 8), 5);
    }

    #[test]
    fn a_neighbour_takes_threads_after_two_windows_and_gives_them_back() {
        let mut g = Governor::new(2, 2, 100.0);
        let start = Instant::now();
        // Alone; a neighbour takes a core (one window is not enough); o1 at
        // one thread while the neighbour gets the other core; it leaves.
        let counts = run(
            &mut g,
            start,
            &[
                (0.0, 2.0),
                (1.0, 1.0),
                (1.0, 1.0),
                (1.0, 1.0),
                (0.0, 1.0),
                (0.0, 1.0),
                (0.0, 2.0),
            ],
        );
        assert_eq!(counts, vec![2, 2, 1, 1, 1, 2, 2]);
    }

    #[test]
    fn once_working_one_busy_window_changes_nothing() {
        let mut g = Governor::new(2, 2, 100.0);
        let counts = run(
            &mut g,
            Instant::now(),
            &[(0.0, 2.0), (1.2, 1.0), (0.1, 2.0), (1.2, 1.0), (0.0, 2.0)],
        );
        assert_eq!(counts, vec![2, 2, 2, 2, 2]);
    }

    #[test]
    fn a_token_slowed_a_whole_second_is_evidence_enough() {
        let mut g = Governor::new(2, 2, 100.0);
        let start = Instant::now();
        run(&mut g, start, &[(0.0, 2.0)]);
        // 1.2 s for one token while others kept a core busy.
        let c = Counters {
            busy: 100 + 120 + 120,
            own: 100 + 120,
        };
        assert_eq!(g.observe(at(start, 1_700), c), Some(1));
    }

    #[test]
    fn the_first_window_decides_at_once() {
        let mut g = Governor::new(2, 2, 100.0);
        assert_eq!(
            run(&mut g, Instant::now(), &[(1.0, 1.0), (1.0, 1.0)]),
            vec![1, 1]
        );
    }

    #[test]
    fn a_pause_between_turns_decides_at_once_and_a_long_one_starts_over() {
        let mut g = Governor::new(2, 2, 100.0);
        let start = Instant::now();
        run(&mut g, start, &[(0.0, 2.0)]);
        let c = Counters {
            busy: 100,
            own: 100,
        };
        // Ten idle seconds in which others kept a core busy: one thread at once.
        let c1 = Counters {
            busy: c.busy + 1000,
            own: c.own,
        };
        assert_eq!(g.observe(at(start, 10_500), c1), Some(1));
        // A minute later, whatever the counters say, nothing changes; the
        // next window decides.
        let c2 = Counters {
            busy: c1.busy + 12_000,
            own: c1.own,
        };
        assert_eq!(g.observe(at(start, 70_500), c2), None);
        assert!(!g.due(at(start, 70_600)));
        assert!(g.due(at(start, 71_000)));
        let c3 = Counters {
            busy: c2.busy + 100,
            own: c2.own + 100,
        };
        assert_eq!(g.observe(at(start, 71_000), c3), Some(2));
    }

    #[test]
    fn proc_files_parse() {
        assert_eq!(
            parse_cpu_list("0-3,8,10-11"),
            Some(vec![0, 1, 2, 3, 8, 10, 11])
        );
        assert_eq!(parse_cpu_list("5"), Some(vec![5]));
        assert_eq!(parse_cpu_list("x"), None);
        assert_eq!(parse_cpu_list(""), None);
        let stat = "cpu  1 0 10 100 5 0 0 0 0 0\n\
                    cpu0 1 2 3 100 50 4 5 6 0 0\n\
                    cpu1 10 0 10 100 5 0 0 0 0 0\n\
                    intr 1 2 3\n";
        assert_eq!(busy_ticks(stat, &[0]), Some(21));
        assert_eq!(busy_ticks(stat, &[0, 1]), Some(41));
        assert_eq!(busy_ticks(stat, &[7]), None);
        let own = "1234 (o1 (a b)) S 1 2 3 4 5 6 7 8 9 10 250 30 0 0 20 0 1";
        assert_eq!(own_ticks(own), Some(280));
        assert!(CpuCounters::new().is_some_and(|c| c.cores() >= 1 && c.read().is_some()));
    }
}
