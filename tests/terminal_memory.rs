//! A flood of hostile output keeps a `Screen` and a `LineCapture` bounded in
//! memory. This file holds a single test so that nothing else allocates in
//! the process while resident memory is measured.

use mew::terminal::{CapturedLine, LineCapture, Screen};

/// Resident set size of this process, in bytes (Linux), if readable.
fn rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[test]
fn floods_do_not_grow_memory() {
    const FLOOD: usize = 50 * 1024 * 1024;
    let mut screen = Screen::new(50, 200, 1000);
    let mut capture = LineCapture::new();
    let mut lines = 0usize;
    let mut sink = |_: CapturedLine<'_>| lines += 1;
    // Fill the scrollback first so that its own (bounded) size is counted in
    // the baseline.
    for i in 0..2000 {
        let line = format!("{i:0>199}\r\n");
        screen.process(line.as_bytes());
        capture.feed(line.as_bytes(), &mut sink);
    }
    let before = rss();

    let chunk = vec![b'x'; 64 * 1024];
    for (start, name) in [
        (&b"\x1b]0;"[..], "OSC"),
        (b"\x1bP", "DCS"),
        (b"\x1b_", "APC"),
    ] {
        screen.process(start);
        capture.feed(start, &mut sink);
        for _ in 0..FLOOD / chunk.len() {
            assert!(screen.process(&chunk).is_empty());
            capture.feed(&chunk, &mut sink);
        }
        screen.process(b"\x1b\\\x07");
        capture.feed(b"\x1b\\\x07", &mut sink);
        screen.process(format!("after {name}\r\n").as_bytes());
    }
    // Invalid UTF-8 and a line that never ends.
    let invalid: Vec<u8> = (0..64 * 1024).map(|i| 0x80 | (i as u8 & 0x7f)).collect();
    for _ in 0..FLOOD / invalid.len() {
        screen.process(&invalid);
        capture.feed(&invalid, &mut sink);
    }
    let after = rss();

    let (_, cols) = screen.size();
    screen.process(b"\r\nstill parsing");
    let rows: Vec<String> = screen.vt().rows(0, cols).collect();
    assert_eq!(rows.last().map(String::as_str), Some("still parsing"));
    assert_eq!(screen.search("after OSC", false).len(), 1);
    assert!(screen.scrollback_len() <= 1000);

    if let (Some(before), Some(after)) = (before, after) {
        let growth = after.saturating_sub(before);
        eprintln!("RSS before {before} after {after} growth {growth}");
        assert!(
            growth < 16 * 1024 * 1024,
            "RSS grew by {growth} bytes over a {FLOOD}-byte flood"
        );
    }
}
