//! Cost of one TUI frame for a remote client: `RemoteRenderer::render` of a
//! 200×50 client with 20 running processes, the selected one's pane full of
//! short log lines, one new line per frame (what an idle space with a
//! ticking process costs per redraw; the scrollback is full). Run with `cargo bench --bench render`;
//! prints µs per frame and bytes sent per frame. Not a test: it asserts
//! nothing. Under `cargo test --all-targets` it runs a few frames, only to
//! prove it still runs.

use std::time::Instant;

use mew::status::ProcState;
use mew::tui::testing::{MemorySource, empty_status, process};
use mew::tui::{App, RemoteRenderer};

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let frames: u32 = if full { 5_000 } else { 20 };
    let mut status = empty_status("bench");
    for i in 0..20 {
        status
            .processes
            .push(process(&format!("p{i:02}"), ProcState::Running, 1_000));
    }
    let mut src = MemorySource::new(status);
    let mut app = App::new(&[]).expect("default keys");
    app.set_size(200, 50);
    app.set_clock(Some(61_000));
    let mut renderer = RemoteRenderer::new(200, 50);
    // The pane size the app asks for, so the screen fills it exactly.
    let _ = renderer.render(&app, &src);
    let (rows, cols) = app
        .desired_sizes(&src)
        .first()
        .map_or((48, 170), |(_, r, c)| (*r, *c));
    src.add_terminal("p00", rows, cols, 1000);
    for n in 0..1200 {
        src.feed("p00", format!("p00 tick {n}\r\n").as_bytes());
    }
    let _ = renderer.render(&app, &src);
    let mut bytes = 0usize;
    let t = Instant::now();
    for n in 0..frames {
        src.feed("p00", format!("p00 tick {}\r\n", 1200 + n).as_bytes());
        bytes += renderer.render(&app, &src).len();
    }
    let per = t.elapsed().as_secs_f64() / f64::from(frames);
    println!(
        "render 200x50, 20 processes, one new line per frame: {:.1} µs/frame, {} bytes/frame",
        per * 1e6,
        bytes / frames as usize
    );
}
