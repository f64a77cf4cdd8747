//! `/proc/<pid>/stat`, parsed in one place for the whole crate.
//!
//! The second field of `stat` is the command name in parentheses. It is chosen by the
//! process (`prctl(PR_SET_NAME)`, the executable's file name) and may hold spaces and `)`,
//! so the fixed fields are counted from the *last* `)` (proc(5)). Everything here returns
//! `None` (or an empty list) for a process that is gone or a file that does not parse: a
//! process can exit between any two reads, and its `stat` is not ours to trust.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

/// How many ancestors [`ancestry`] follows at most: a guard against a parent chain that
/// changes while it is read (pids are reused), not a limit real process trees reach.
pub const MAX_ANCESTRY_DEPTH: usize = 16;

/// The fields of `/proc/<pid>/stat` the crate uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    /// Field 1: the process id.
    pub pid: u32,
    /// Field 2 without its parentheses (at most 15 bytes, any characters but NUL).
    pub comm: String,
    /// Field 3: `R`, `S`, `D`, `Z` (zombie), `T`, `t`, `X` (dead), `I`, ...
    pub state: char,
    /// Field 4: the parent's pid (0 for pid 1 and kernel threads' parent).
    pub ppid: u32,
    /// Field 5: the process group.
    pub pgrp: u32,
    /// Field 14: user-mode CPU time, in clock ticks (`sysconf(_SC_CLK_TCK)`).
    pub utime: u64,
    /// Field 15: kernel-mode CPU time, in clock ticks.
    pub stime: u64,
    /// Field 22: when the process started, in clock ticks after boot. With the pid it
    /// identifies a process across pid reuse.
    pub start_time: u64,
    /// Field 24: resident set size, in pages.
    pub rss_pages: u64,
}

impl Stat {
    /// True once the process has exited (a zombie waiting to be reaped, or dead).
    pub fn has_exited(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parses the text of a `/proc/<pid>/stat` file. `None` if it is truncated or malformed.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    if close < open {
        return None;
    }
    let pid = text[..open].trim().parse().ok()?;
    let comm = text[open + 1..close].to_owned();
    // `rest` starts at field 3 (state): field n is at index n - 3.
    let rest: Vec<&str> = text[close + 1..].split_whitespace().collect();
    let field = |n: usize| rest.get(n - 3).copied();
    let number = |n: usize| field(n).and_then(|f| f.parse::<u64>().ok());
    let mut state = field(3)?.chars();
    let state_char = state.next()?;
    if state.next().is_some() {
        return None;
    }
    Some(Stat {
        pid,
        comm,
        state: state_char,
        ppid: field(4)?.parse().ok()?,
        pgrp: field(5)?.parse().ok()?,
        utime: number(14)?,
        stime: number(15)?,
        start_time: number(22)?,
        // A signed field in the kernel; never negative in practice, clamp if it were.
        rss_pages: field(24)?.parse::<i64>().ok()?.max(0).unsigned_abs(),
    })
}

/// Reads and parses `/proc/<pid>/stat`; `None` if the process is gone.
pub fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// The parent of `pid`.
pub fn ppid(pid: u32) -> Option<u32> {
    stat(pid).map(|s| s.ppid)
}

/// The state letter of `pid` (`Z` for a zombie).
pub fn state(pid: u32) -> Option<char> {
    stat(pid).map(|s| s.state)
}

/// When `pid` started, in clock ticks after boot.
pub fn start_time(pid: u32) -> Option<u64> {
    stat(pid).map(|s| s.start_time)
}

/// True if `pid` exists and has not exited (a zombie is not alive).
pub fn is_alive(pid: u32) -> bool {
    stat(pid).is_some_and(|s| !s.has_exited())
}

/// `pid`, its parent, its grandparent, ... nearest first, up to and including pid 1, and
/// at most [`MAX_ANCESTRY_DEPTH`] ancestors. Empty if `pid` does not exist; stops early
/// where a parent's `stat` cannot be read.
pub fn ancestry(pid: u32) -> Vec<u32> {
    ancestry_with(pid, ppid)
}

/// [`ancestry`] over any parent function (tests use a fake process table).
fn ancestry_with(pid: u32, parent_of: impl Fn(u32) -> Option<u32>) -> Vec<u32> {
    let Some(mut parent) = parent_of(pid) else {
        return Vec::new();
    };
    let mut out = vec![pid];
    while parent != 0 && out.len() <= MAX_ANCESTRY_DEPTH && !out.contains(&parent) {
        out.push(parent);
        match parent_of(parent) {
            Some(p) => parent = p,
            None => break,
        }
    }
    out
}

/// True if `pid` is `ancestor` or one of its descendants (within [`MAX_ANCESTRY_DEPTH`]).
pub fn is_same_or_descendant(pid: u32, ancestor: u32) -> bool {
    pid == ancestor || ancestry(pid).contains(&ancestor)
}

/// The arguments of `pid` from `/proc/<pid>/cmdline`; `None` if the process is gone.
/// Empty for a zombie or a kernel thread.
pub fn cmdline(pid: u32) -> Option<Vec<OsString>> {
    let bytes = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(split_cmdline(bytes))
}

/// Splits NUL-terminated arguments; a missing final NUL (a process that rewrote its
/// arguments) still yields the last one.
fn split_cmdline(bytes: Vec<u8>) -> Vec<OsString> {
    let body = bytes.strip_suffix(&[0]).unwrap_or(&bytes);
    if body.is_empty() {
        return Vec::new();
    }
    body.split(|b| *b == 0)
        .map(|a| OsString::from_vec(a.to_vec()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};

    /// A real line from a JVM (fields after rss shortened to what the kernel prints).
    const JAVA: &str = "4242 (java) S 4200 4242 4200 0 -1 4194560 51234 0 12 0 \
        1530 211 0 0 20 0 57 0 98765 4123456789 81234 18446744073709551615 1 1 0 0 0 0 0 \
        4096 16796879 0 0 0 17 1 0 0 0 0 0\n";

    #[test]
    fn parses_the_fields_by_position() {
        let s = parse_stat(JAVA).expect("parses");
        assert_eq!(
            s,
            Stat {
                pid: 4242,
                comm: "java".into(),
                state: 'S',
                ppid: 4200,
                pgrp: 4242,
                utime: 1530,
                stime: 211,
                start_time: 98765,
                rss_pages: 81234,
            }
        );
        assert!(!s.has_exited());
    }

    #[test]
    fn command_names_with_spaces_and_parentheses() {
        for comm in ["a b", "x) Z 1 2 (", ")", "((", "Web Content)", ""] {
            let line = JAVA.replacen("(java)", &format!("({comm})"), 1);
            let s = parse_stat(&line).unwrap_or_else(|| panic!("{comm:?} parses"));
            assert_eq!(s.comm, comm);
            assert_eq!(
                (s.state, s.ppid, s.start_time),
                ('S', 4200, 98765),
                "{comm:?}"
            );
        }
    }

    #[test]
    fn zombies_and_dead_processes_have_exited() {
        let z = parse_stat(&JAVA.replacen(") S ", ") Z ", 1)).expect("parses");
        assert!(z.has_exited());
        let x = parse_stat(&JAVA.replacen(") S ", ") X ", 1)).expect("parses");
        assert!(x.has_exited());
    }

    #[test]
    fn malformed_text_is_none_not_a_panic() {
        let cut_after_paren = &JAVA[..JAVA.find(')').expect(")") + 1];
        for bad in [
            "",
            ")",
            "(",
            ") (",
            "4242",
            "4242 (java)",
            cut_after_paren,
            "4242 (java) S",
            "4242 (java) S 4200 4242",
            "x (java) S 4200 4242 4200 0 -1 4194560 51234 0 12 0 1530 211 0 0 20 0 57 0 98765 1 2",
            "4242 (java) SS 4200 4242 4200 0 -1 4194560 51234 0 12 0 1530 211 0 0 20 0 57 0 98765 1 2",
        ] {
            assert_eq!(parse_stat(bad), None, "{bad:?}");
        }
        // Every prefix of a valid line either parses to the same leading fields or fails.
        for end in 0..JAVA.len() {
            if let Some(s) = parse_stat(&JAVA[..end]) {
                assert_eq!((s.pid, s.ppid), (4242, 4200));
            }
        }
    }

    #[test]
    fn this_process_reads_like_the_kernel_says() {
        let me = std::process::id();
        let s = stat(me).expect("own stat");
        assert_eq!(s.pid, me);
        assert_eq!(s.ppid, std::os::unix::process::parent_id());
        assert_eq!(s.pgrp, nix::unistd::getpgrp().as_raw().unsigned_abs());
        assert!(is_alive(me));
        assert!(s.rss_pages > 0);
        assert_eq!(start_time(me), Some(s.start_time));
        // Our own state changes between reads (R while reading, S otherwise): only check
        // that it is a live one.
        assert!(state(me).is_some_and(|c| !matches!(c, 'Z' | 'X' | 'x')));
    }

    #[test]
    fn a_child_descends_from_us_and_not_the_other_way_round() {
        let me = std::process::id();
        // `cat` blocks on its stdin until we close it: alive for as long as we need.
        let mut child = Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn cat");
        let pid = child.id();
        // `spawn` can return while the child is still inside execve (its cmdline empty);
        // a line echoed back proves cat is running.
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(b"ping\n").expect("write");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read");
        assert_eq!(line, "ping\n");
        assert_eq!(ppid(pid), Some(me));
        let chain = ancestry(pid);
        assert_eq!(&chain[..2], &[pid, me], "{chain:?}");
        assert_eq!(chain.get(2).copied(), ppid(me), "{chain:?}");
        assert!(is_same_or_descendant(pid, me));
        assert!(is_same_or_descendant(pid, pid));
        assert!(!is_same_or_descendant(me, pid));
        let args = cmdline(pid).expect("cmdline");
        assert_eq!(args, [OsString::from("cat")]);

        // Closing stdin ends cat. Wait for the exit without reaping: a zombie is not alive.
        drop(stdin);
        let id = nix::sys::wait::Id::Pid(nix::unistd::Pid::from_raw(pid as i32));
        let flags = nix::sys::wait::WaitPidFlag::WEXITED | nix::sys::wait::WaitPidFlag::WNOWAIT;
        nix::sys::wait::waitid(id, flags).expect("waitid");
        assert_eq!(state(pid), Some('Z'));
        assert!(!is_alive(pid));
        assert!(
            ancestry(pid).starts_with(&[pid, me]),
            "a zombie keeps its parent"
        );

        // Reaped, it is gone.
        assert!(child.wait().expect("wait").success());
        assert_eq!(stat(pid), None);
        assert_eq!(ancestry(pid), Vec::<u32>::new());
        assert!(!is_same_or_descendant(pid, me));
    }

    #[test]
    fn ancestry_is_bounded_and_survives_cycles() {
        // A chain longer than the bound: 100 -> 99 -> ... -> 1 -> 0.
        let deep = |p: u32| (p <= 100).then(|| p.saturating_sub(1));
        let chain = ancestry_with(100, deep);
        assert_eq!(chain.len(), MAX_ANCESTRY_DEPTH + 1);
        assert_eq!(chain[0], 100);
        assert_eq!(chain[MAX_ANCESTRY_DEPTH], 100 - MAX_ANCESTRY_DEPTH as u32);

        // A short chain ends at pid 1 (whose parent is 0).
        let short = |p: u32| (p <= 3).then(|| p.saturating_sub(1));
        assert_eq!(ancestry_with(3, short), [3, 2, 1]);

        // A cycle (a reused pid read mid-change) ends instead of looping.
        let table: HashMap<u32, u32> = [(10, 11), (11, 12), (12, 10)].into();
        assert_eq!(ancestry_with(10, |p| table.get(&p).copied()), [10, 11, 12]);

        // An unreadable parent ends the chain after it.
        let table: HashMap<u32, u32> = [(5, 6)].into();
        assert_eq!(ancestry_with(5, |p| table.get(&p).copied()), [5, 6]);
    }

    #[test]
    fn cmdline_splitting() {
        assert_eq!(split_cmdline(Vec::new()), Vec::<OsString>::new());
        assert_eq!(
            split_cmdline(b"a\0b c\0\0d\0".to_vec()),
            ["a", "b c", "", "d"]
        );
        assert_eq!(
            split_cmdline(b"rewritten args".to_vec()),
            ["rewritten args"]
        );
    }
}
