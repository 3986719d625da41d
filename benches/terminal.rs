//! Throughput of the per-byte hot path: `LineCapture`, `Screen` and
//! `LogWriter`. Run with `cargo bench --bench terminal`; prints MB/s (or
//! lines/s) per input shape. Not a test: it asserts nothing. Under
//! `cargo test --all-targets` (no `--bench` argument) it runs on tiny inputs,
//! only to prove it still runs.

use std::time::Instant;

use mew::logs::LogWriter;
use mew::terminal::{CapturedLine, LineCapture, Screen};

fn mb_per_s(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / secs / 1e6
}

fn bench(name: &str, data: &[u8]) {
    let mut screen = Screen::new(50, 200, 1000);
    let t = Instant::now();
    for chunk in data.chunks(64 * 1024) {
        screen.process(chunk);
    }
    let screen_rate = mb_per_s(data.len(), t.elapsed().as_secs_f64());
    let mut capture = LineCapture::new();
    let mut lines = 0usize;
    let mut sink = |_: CapturedLine<'_>| lines += 1;
    let t = Instant::now();
    for chunk in data.chunks(64 * 1024) {
        capture.feed(chunk, &mut sink);
    }
    capture.flush(&mut sink);
    let capture_rate = mb_per_s(data.len(), t.elapsed().as_secs_f64());
    std::hint::black_box(lines);
    println!("{name:<12} capture {capture_rate:>8.1} MB/s  screen {screen_rate:>7.1} MB/s");
}

fn repeat(unit: &[u8], size: usize) -> Vec<u8> {
    unit.repeat(size / unit.len())
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let size: usize = if full { 16 << 20 } else { 64 << 10 };
    let lines: u64 = if full { 1_000_000 } else { 1_000 };
    bench(
        "text",
        &repeat(
            b"2026-11-26 INFO request handled in 12ms path=/api/v1\r\n",
            size,
        ),
    );
    bench("progress", &repeat(b"\rprogress 12% [#####     ]", size));
    bench(
        "sgr",
        &repeat(b"\x1b[31mR\x1b[0m \x1b[1;32mGreen\x1b[0m\r\n", size),
    );
    bench(
        "cjk",
        &repeat("世界你好世界你好世界你好世界你好\r\n".as_bytes(), size),
    );
    bench(
        "invalid",
        &(0..size)
            .map(|i| 0x80 | (i as u8 & 0x7f))
            .collect::<Vec<u8>>(),
    );
    bench(
        "osc-flood",
        &[b"\x1b]0;".to_vec(), vec![b'x'; size]].concat(),
    );

    let dir = std::env::temp_dir().join(format!("mew-bench-logs-{}", std::process::id()));
    let mut writer = LogWriter::open(&dir, "bench", 10 << 20, 2);
    let start_ms = mew::status::now_millis();
    let t = Instant::now();
    for i in 0..lines {
        writer.write_line(
            start_ms + i / 100,
            "2026-11-26 INFO request handled in 12ms path=/api/v1",
        );
    }
    writer.flush();
    let secs = t.elapsed().as_secs_f64();
    drop(writer);
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "log writer   {:>8.0} lines/s ({lines} lines, rotating at 10 MB)",
        lines as f64 / secs
    );
}
