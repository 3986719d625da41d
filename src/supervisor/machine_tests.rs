//! The lifecycle rules, driven on the pure machine with a fake clock and
//! fake processes: every input is answered by a [`World`] that plays the OS.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::config::{self, DependCondition, ResolveContext, RestartPolicy};

/// A space from a `processes:` YAML body.
fn space(processes: &str) -> Vec<ResolvedProcess> {
    let yaml = format!("processes:\n{processes}");
    let cfg = match config::parse_yaml(&yaml, Path::new("/s/.mew/space.yaml"), Path::new("/s")) {
        Ok(c) => c,
        Err(e) => panic!("bad test config:\n{e}\n{yaml}"),
    };
    let ctx = ResolveContext {
        port: 8000,
        tokens: HashMap::new(),
    };
    config::resolve_with_env(&cfg, &ctx, &|_| None).0
}

/// The OS as the machine sees it: pids, timers, sweeps and signals, all fake.
struct World {
    m: Machine,
    base: Instant,
    clock: Duration,
    next_pid: u32,
    /// index → (generation, pid) of the live run.
    live: HashMap<usize, (u64, u32)>,
    /// Processes that ignore their stop signal (only SIGKILL ends them).
    stubborn: Vec<usize>,
    /// The next spawn of these fails: (message, transient).
    fail_spawn: HashMap<usize, (String, bool)>,
    timers: Vec<(Duration, Input)>,
    sweeps: Vec<usize>,
    run_swept: bool,
    /// Exits the fake processes will report (a signal arrived).
    exits: Vec<(usize, Exit)>,
    /// Every effect, in order.
    log: Vec<Effect>,
}

impl World {
    fn new(processes: &str) -> World {
        World::of(space(processes))
    }

    fn of(processes: Vec<ResolvedProcess>) -> World {
        let base = Instant::now();
        let now = Now {
            at: base,
            millis: 1_000_000,
        };
        World {
            m: Machine::new(processes, Duration::from_secs(30), now),
            base,
            clock: Duration::ZERO,
            next_pid: 100,
            live: HashMap::new(),
            stubborn: Vec::new(),
            fail_spawn: HashMap::new(),
            timers: Vec::new(),
            sweeps: Vec::new(),
            run_swept: false,
            exits: Vec::new(),
            log: Vec::new(),
        }
    }

    fn now(&self) -> Now {
        Now {
            at: self.base + self.clock,
            millis: 1_000_000 + self.clock.as_millis() as u64,
        }
    }

    fn idx(&self, name: &str) -> usize {
        match self.m.procs().iter().position(|p| p.name() == name) {
            Some(i) => i,
            None => panic!("no process {name}"),
        }
    }

    fn boot(&mut self) {
        let now = self.now();
        self.m.boot(now);
        self.pump();
    }

    fn input(&mut self, input: Input) -> Result<(), String> {
        let now = self.now();
        let r = self.m.handle(now, input);
        self.pump();
        r
    }

    /// Execute effects like the runtime does: a spawn is answered at once.
    fn pump(&mut self) {
        let mut queue: std::collections::VecDeque<Effect> = self.m.take_effects().into();
        while let Some(e) = queue.pop_front() {
            self.log.push(e.clone());
            let answer = match e {
                Effect::Spawn { index, generation } => {
                    assert!(
                        !self.live.contains_key(&index),
                        "two live runs of {}",
                        self.m.procs()[index].name()
                    );
                    assert!(
                        !self.sweeps.contains(&index),
                        "respawned before its escapees were swept"
                    );
                    Some(match self.fail_spawn.remove(&index) {
                        Some((message, transient)) => Input::SpawnFailed {
                            index,
                            generation,
                            message,
                            exit_code: 127,
                            transient,
                        },
                        None => {
                            self.next_pid += 1;
                            self.live.insert(index, (generation, self.next_pid));
                            Input::Spawned {
                                index,
                                generation,
                                pid: self.next_pid,
                            }
                        }
                    })
                }
                Effect::Signal { pid, signal } => {
                    let hit = self.live.iter().find(|(_, (_, p))| *p == pid);
                    if let Some((&i, _)) = hit
                        && (signal == libc::SIGKILL || !self.stubborn.contains(&i))
                        && !self.exits.iter().any(|(j, _)| *j == i)
                    {
                        self.exits.push((i, Exit::Signal(signal)));
                    }
                    None
                }
                Effect::Arm {
                    index,
                    generation,
                    timer,
                    after,
                } => {
                    self.timers.push((
                        self.clock + after,
                        Input::Timer {
                            index,
                            generation,
                            timer,
                        },
                    ));
                    None
                }
                Effect::ArmShutdown { after } => {
                    self.timers
                        .push((self.clock + after, Input::ShutdownDeadline));
                    None
                }
                Effect::SweepEscapees { index } => {
                    self.sweeps.push(index);
                    None
                }
                Effect::SweepRun => {
                    assert!(!self.run_swept, "the run swept twice");
                    self.run_swept = true;
                    None
                }
                _ => None,
            };
            if let Some(a) = answer {
                let now = self.now();
                let _ = self.m.handle(now, a);
                for e in self.m.take_effects().into_iter().rev() {
                    queue.push_front(e);
                }
            }
            self.check();
        }
    }

    /// What the machine believes matches the fake world.
    fn check(&self) {
        for (i, p) in self.m.procs().iter().enumerate() {
            if p.state.is_alive() {
                assert_eq!(
                    p.pid(),
                    self.live.get(&i).map(|l| l.1),
                    "{} is {:?}",
                    p.name(),
                    p.state
                );
            }
        }
    }

    /// A process ends on its own (or from a signal that reached it).
    fn exit(&mut self, name: &str, exit: Exit) {
        let i = self.idx(name);
        self.exit_index(i, exit);
    }

    fn exit_index(&mut self, i: usize, exit: Exit) {
        if let Some((generation, _)) = self.live.remove(&i) {
            self.exits.retain(|(j, _)| *j != i);
            let _ = self.input(Input::Exited {
                index: i,
                generation,
                exit,
            });
        }
    }

    /// Deliver what the fake OS has to say: exits from signals, then sweeps.
    fn settle(&mut self) {
        loop {
            if let Some((i, exit)) = self.exits.pop() {
                self.exit_index(i, exit);
            } else if let Some(index) = self.sweeps.pop() {
                let _ = self.input(Input::EscapeesSwept { index });
            } else {
                break;
            }
        }
    }

    /// Let time pass, firing the timers due in order.
    fn advance(&mut self, by: Duration) {
        let until = self.clock + by;
        loop {
            self.timers.sort_by_key(|t| t.0);
            match self.timers.first() {
                Some((at, _)) if *at <= until => {
                    let (at, input) = self.timers.remove(0);
                    self.clock = self.clock.max(at);
                    let _ = self.input(input);
                    self.settle();
                }
                _ => break,
            }
        }
        self.clock = until;
    }

    fn state(&self, name: &str) -> &ProcState {
        &self.m.procs()[self.idx(name)].state
    }

    fn spawns(&self, name: &str) -> usize {
        let i = self.idx(name);
        self.log
            .iter()
            .filter(|e| matches!(e, Effect::Spawn { index, .. } if *index == i))
            .count()
    }

    fn messages(&self, name: &str) -> Vec<String> {
        self.log
            .iter()
            .filter_map(|e| match e {
                Effect::Emit { event, .. } if event.process == name => Some(event.message.clone()),
                _ => None,
            })
            .collect()
    }

    fn clear_log(&mut self) {
        self.log.clear();
    }
}

fn names(n: &[&str]) -> Vec<String> {
    n.iter().map(|s| s.to_string()).collect()
}

const POLICIES: [&str; 3] = ["no", "on-failure", "always"];

#[test]
fn restart_policy_by_exit_kind() {
    let exits = [Exit::Code(0), Exit::Code(3), Exit::Signal(libc::SIGSEGV)];
    for policy in POLICIES {
        for one_shot in [false, true] {
            for exit in exits {
                let mut w = World::new(&format!(
                    "  a:\n    command: x\n    restart_policy: {policy}\n    one_shot: {one_shot}\n    backoff: {{ initial: 100ms, max: 1s, multiplier: 2 }}\n"
                ));
                w.boot();
                assert_eq!(w.state("a"), &ProcState::Ready);
                w.clock += Duration::from_secs(5);
                w.exit("a", exit);
                let restarts = match (policy, exit) {
                    ("no", _) => false,
                    ("on-failure", e) => e != Exit::Code(0),
                    (_, Exit::Code(0)) => !one_shot,
                    _ => true,
                };
                let case = format!("{policy} one_shot={one_shot} {exit:?}");
                let ended = match exit {
                    Exit::Code(c) => format!("exited with code {c}"),
                    Exit::Signal(s) => format!("killed by {}", signal_name(s)),
                };
                assert!(w.messages("a").contains(&ended), "{case}");
                if restarts {
                    assert!(
                        matches!(w.state("a"), ProcState::Backoff { .. }),
                        "{case}: {:?}",
                        w.state("a")
                    );
                    assert!(
                        w.messages("a").contains(&"restarting in 100ms".to_string()),
                        "{case}: {:?}",
                        w.messages("a")
                    );
                    // The backoff is over, but the escapees are not swept yet.
                    w.clock += Duration::from_millis(100);
                    let (_, due) = w.timers.remove(0);
                    w.input(due).unwrap_or_default();
                    assert_eq!(
                        w.state("a"),
                        &ProcState::Pending {
                            waiting_for: vec![]
                        },
                        "{case}"
                    );
                    assert_eq!(w.spawns("a"), 1, "{case}");
                    w.settle();
                    assert_eq!(w.spawns("a"), 2, "{case}");
                    assert_eq!(w.m.procs()[0].restarts, 1, "{case}");
                } else {
                    let want = match exit {
                        Exit::Code(c) => ProcState::Exited { code: c },
                        Exit::Signal(s) => ProcState::Killed { signal: s },
                    };
                    assert_eq!(w.state("a"), &want, "{case}");
                    w.settle();
                    w.advance(Duration::from_secs(60));
                    assert_eq!(w.spawns("a"), 1, "{case}");
                }
            }
        }
    }
}

#[test]
fn a_user_stop_is_never_a_crash_and_escalates_after_stop_timeout() {
    for policy in POLICIES {
        for stubborn in [false, true] {
            let mut w = World::new(&format!(
                "  a:\n    command: x\n    restart_policy: {policy}\n    stop_timeout: 2s\n"
            ));
            if stubborn {
                w.stubborn.push(0);
            }
            w.boot();
            let pid = w.m.procs()[0].pid().unwrap_or_default();
            w.input(Input::Stop(names(&["a"]))).unwrap_or_default();
            assert_eq!(w.state("a"), &ProcState::Stopping { escalated: false });
            assert!(
                w.messages("a")
                    .contains(&format!("stopping: sent SIGTERM to process group {pid}"))
            );
            w.settle();
            if stubborn {
                assert!(w.state("a").is_alive());
                w.advance(Duration::from_millis(1999));
                assert_eq!(w.state("a"), &ProcState::Stopping { escalated: false });
                w.advance(Duration::from_millis(1));
                assert!(w.messages("a").contains(&format!(
                    "did not stop within 2s: sent SIGKILL to process group {pid}"
                )));
                w.settle();
            }
            assert_eq!(w.state("a"), &ProcState::Stopped, "{policy}");
            let how = if stubborn { "SIGKILL" } else { "SIGTERM" };
            assert!(
                w.messages("a").contains(&format!("stopped ({how})")),
                "{:?}",
                w.messages("a")
            );
            w.advance(Duration::from_secs(120));
            w.settle();
            assert_eq!(w.spawns("a"), 1);
            assert_eq!(w.state("a"), &ProcState::Stopped);
        }
    }
}

#[test]
fn kill_sends_sigkill_at_once() {
    let mut w = World::new("  a:\n    command: x\n");
    w.boot();
    w.input(Input::Kill(names(&["a"]))).unwrap_or_default();
    assert_eq!(w.state("a"), &ProcState::Stopping { escalated: true });
    assert!(!w.log.iter().any(|e| matches!(e, Effect::Arm { .. })));
    w.settle();
    assert_eq!(w.state("a"), &ProcState::Stopped);
}

#[test]
fn a_stale_timer_does_nothing() {
    let mut w = World::new(
        "  a:\n    command: x\n    restart_policy: always\n    backoff: { initial: 1s, max: 1s, multiplier: 1 }\n",
    );
    w.boot();
    w.exit("a", Exit::Code(1));
    w.settle();
    let old = w.m.procs()[0].generation;
    // The user starts it before the backoff is over: the timer is stale.
    w.input(Input::Start(names(&["a"]))).unwrap_or_default();
    assert_eq!(w.spawns("a"), 2);
    w.clear_log();
    let before = w.m.procs()[0].state.clone();
    for timer in [Timer::RestartDue, Timer::Escalate] {
        w.input(Input::Timer {
            index: 0,
            generation: old,
            timer,
        })
        .unwrap_or_default();
    }
    assert!(w.log.is_empty(), "{:?}", w.log);
    assert_eq!(w.m.procs()[0].state, before);
}

#[test]
fn max_restarts_gives_up_and_a_user_start_resets_the_budget() {
    let mut w = World::new(
        "  a:\n    command: x\n    restart_policy: on-failure\n    max_restarts: 2\n    backoff: { initial: 10ms, max: 10ms, multiplier: 1 }\n",
    );
    w.boot();
    for _ in 0..2 {
        w.clock += Duration::from_secs(2);
        w.exit("a", Exit::Code(1));
        w.settle();
        w.advance(Duration::from_millis(10));
    }
    w.clock += Duration::from_secs(2);
    w.exit("a", Exit::Code(1));
    assert_eq!(
        w.state("a"),
        &ProcState::Failed {
            reason: "gave up after 2 restarts".into()
        }
    );
    w.settle();
    assert_eq!(w.spawns("a"), 3);
    w.input(Input::Start(names(&["a"]))).unwrap_or_default();
    assert_eq!(w.spawns("a"), 4);
    assert_eq!(w.m.procs()[0].policy.since_user_start, 0);
    // The budget is whole again: it restarts.
    w.clock += Duration::from_secs(2);
    w.exit("a", Exit::Code(1));
    assert!(matches!(w.state("a"), ProcState::Backoff { .. }));
}

#[test]
fn a_user_restart_resets_the_backoff() {
    let mut w = World::new(
        "  a:\n    command: x\n    restart_policy: always\n    backoff: { initial: 100ms, max: 10s, multiplier: 10 }\n",
    );
    w.boot();
    for delay in [100, 1000] {
        w.clock += Duration::from_secs(2);
        w.exit("a", Exit::Code(1));
        w.settle();
        assert!(w.messages("a").contains(&format!(
            "restarting in {}",
            crate::human::duration(Duration::from_millis(delay))
        )));
        w.advance(Duration::from_millis(delay));
    }
    w.input(Input::Restart(names(&["a"]))).unwrap_or_default();
    assert_eq!(w.state("a"), &ProcState::Stopping { escalated: false });
    w.settle();
    assert_eq!(w.state("a"), &ProcState::Ready);
    // Waiting on nothing is not news: the line is in the history only.
    assert!(
        w.m.procs()[0]
            .history
            .iter()
            .any(|t| t.reason == "stopped (SIGTERM), restarting")
    );
    assert_eq!(w.m.procs()[0].restarts, 3);
    w.clock += Duration::from_secs(2);
    w.exit("a", Exit::Code(1));
    assert!(w.messages("a").contains(&"restarting in 100ms".to_string()));
}

#[test]
fn dependency_conditions() {
    // started
    let mut w = World::new(
        "  a:\n    command: x\n    ready: { exec: probe }\n  b:\n    command: x\n    depends_on: { a: started }\n",
    );
    w.boot();
    assert_eq!(w.state("a"), &ProcState::Starting);
    assert_eq!(w.state("b"), &ProcState::Ready);

    // ready
    let mut w = World::new(
        "  a:\n    command: x\n    ready: { exec: probe }\n  b:\n    command: x\n    depends_on: { a: ready }\n",
    );
    w.boot();
    assert_eq!(
        w.state("b"),
        &ProcState::Pending {
            waiting_for: vec!["a".into()]
        }
    );
    assert!(w.messages("b").contains(&"waiting for a".to_string()));
    assert!(
        w.log
            .iter()
            .any(|e| matches!(e, Effect::StartProbe { index: 0, .. }))
    );
    let g = w.m.procs()[0].generation;
    w.input(Input::Probe {
        index: 0,
        generation: g,
        result: Err("refused".into()),
    })
    .unwrap_or_default();
    assert_eq!(w.spawns("b"), 0);
    assert_eq!(w.m.procs()[0].probe_msg.as_deref(), Some("refused"));
    w.input(Input::Probe {
        index: 0,
        generation: g,
        result: Ok(()),
    })
    .unwrap_or_default();
    assert_eq!(w.state("a"), &ProcState::Ready);
    assert_eq!(w.state("b"), &ProcState::Ready);

    // completed_successfully, both ways
    for (code, ok) in [(0, true), (2, false)] {
        let mut w = World::new(
            "  a:\n    command: x\n    one_shot: true\n  b:\n    command: x\n    depends_on: { a: completed_successfully }\n",
        );
        w.boot();
        assert_eq!(w.spawns("b"), 0);
        w.exit("a", Exit::Code(code));
        if ok {
            assert_eq!(w.state("b"), &ProcState::Ready);
        } else {
            assert_eq!(
                w.state("b"),
                &ProcState::Failed {
                    reason: "dependency a exited 2".into()
                }
            );
            assert!(
                w.messages("b")
                    .contains(&"not started: dependency a exited 2".to_string())
            );
        }
    }
}

#[test]
fn starting_a_process_wants_its_idle_dependencies() {
    let mut w = World::new(
        "  a:\n    command: x\n    auto_start: false\n  b:\n    command: x\n    auto_start: false\n    depends_on: { a: started }\n",
    );
    w.boot();
    assert_eq!(w.spawns("a") + w.spawns("b"), 0);
    w.input(Input::Start(names(&["b"]))).unwrap_or_default();
    assert!(w.messages("a").is_empty() || w.state("a") == &ProcState::Ready);
    assert_eq!(w.state("a"), &ProcState::Ready);
    assert_eq!(w.state("b"), &ProcState::Ready);
    assert_eq!(
        w.m.procs()[0].history.front().map(|t| t.reason.clone()),
        Some("needed by b".into())
    );
    assert!(w.input(Input::Start(names(&["nope"]))).is_err());
}

#[test]
fn spawn_failures() {
    let mut w = World::new("  a:\n    command: x\n    restart_policy: no\n");
    w.fail_spawn.insert(0, ("no such file".into(), false));
    w.boot();
    assert_eq!(
        w.state("a"),
        &ProcState::Failed {
            reason: "no such file".into()
        }
    );
    assert!(
        w.messages("a")
            .contains(&"failed to start: no such file".to_string())
    );
    assert_eq!(w.m.procs()[0].exit_code, Some(127));

    let mut w = World::new("  a:\n    command: x\n    restart_policy: no\n");
    w.fail_spawn.insert(0, ("too many open files".into(), true));
    w.boot();
    assert!(matches!(w.state("a"), ProcState::Backoff { .. }));
    assert!(
        w.messages("a")
            .contains(&"cannot start now (too many open files); retrying in 1s".to_string())
    );
    w.advance(TRANSIENT_RETRY);
    assert_eq!(w.state("a"), &ProcState::Ready);
    assert_eq!(w.m.procs()[0].restarts, 0);
}

#[test]
fn health_check_failures_restart_or_report() {
    for action in ["restart", "none"] {
        let mut w = World::new(&format!(
            "  a:\n    command: x\n    restart_policy: no\n    health: {{ exec: check, failure_threshold: 2, action: {action} }}\n    backoff: {{ initial: 50ms, max: 50ms, multiplier: 1 }}\n"
        ));
        w.boot();
        assert!(
            w.log
                .iter()
                .any(|e| matches!(e, Effect::StartHealth { index: 0, .. }))
        );
        let g = w.m.procs()[0].generation;
        let fail = Input::Health {
            index: 0,
            generation: g,
            result: Err("boom".into()),
        };
        w.input(fail.clone()).unwrap_or_default();
        assert_eq!(
            w.m.procs()[0].probe_msg.as_deref(),
            Some("health check failed (1 of 2): boom")
        );
        w.input(fail).unwrap_or_default();
        assert_eq!(w.m.procs()[0].healthy, Some(false));
        if action == "restart" {
            assert!(w.messages("a").contains(
                &"health check failed 2 times: boom: restarting: sent SIGTERM to process group 101"
                    .to_string()
            ));
            w.settle();
            assert!(
                w.messages("a").contains(
                    &"stopped (SIGTERM): health check failed 2 times: boom; restarting in 50ms"
                        .to_string()
                ),
                "{:?}",
                w.messages("a")
            );
            w.advance(Duration::from_millis(50));
            assert_eq!(w.spawns("a"), 2);
            assert_eq!(w.m.procs()[0].healthy, None);
        } else {
            assert!(
                w.messages("a")
                    .contains(&"unhealthy: health check failed 2 times: boom".to_string())
            );
            w.input(Input::Health {
                index: 0,
                generation: g,
                result: Ok(()),
            })
            .unwrap_or_default();
            assert!(w.messages("a").contains(&"healthy again".to_string()));
            assert_eq!(w.state("a"), &ProcState::Ready);
        }
    }
}

#[test]
fn memory_over_the_limit_restarts() {
    let mut w = World::new("  a:\n    command: x\n    max_memory: 1M\n");
    w.boot();
    w.input(Input::Memory {
        index: 0,
        rss: 1 << 19,
    })
    .unwrap_or_default();
    assert_eq!(w.state("a"), &ProcState::Ready);
    w.input(Input::Memory {
        index: 0,
        rss: 2 << 20,
    })
    .unwrap_or_default();
    assert_eq!(w.state("a"), &ProcState::Stopping { escalated: false });
    w.settle();
    assert_eq!(w.state("a"), &ProcState::Ready);
    assert_eq!(w.spawns("a"), 2);
    assert_eq!(w.m.procs()[0].restarts, 1);
}

#[test]
fn shutdown_stops_dependents_first_then_sweeps_once() {
    let mut w = World::new(
        "  a:\n    command: x\n  b:\n    command: x\n    depends_on: { a: started }\n  c:\n    command: x\n    auto_start: false\n    restart_policy: always\n",
    );
    w.boot();
    w.input(Input::Shutdown { force: false })
        .unwrap_or_default();
    assert_eq!(w.state("b"), &ProcState::Stopping { escalated: false });
    assert_eq!(w.state("a"), &ProcState::Ready);
    assert!(w.input(Input::Start(names(&["c"]))).is_err());
    let b = w.idx("b");
    let (_, pid) = w.live[&b];
    assert!(w.exits.iter().any(|(i, _)| *i == b));
    w.settle();
    assert_eq!(w.state("b"), &ProcState::Stopped);
    assert_eq!(w.state("a"), &ProcState::Stopped);
    // No per-process sweep during a shutdown: the final one does it once.
    assert!(w.sweeps.is_empty());
    assert!(w.run_swept);
    assert!(!w.m.is_down());
    w.input(Input::SweepDone).unwrap_or_default();
    assert!(w.m.is_down());
    assert_eq!(w.log.last(), Some(&Effect::Down));
    assert!(pid > 0);
}

#[test]
fn a_forced_shutdown_kills_at_once_and_the_deadline_forces() {
    let mut w = World::new("  a:\n    command: x\n  b:\n    command: x\n");
    w.stubborn = vec![0, 1];
    w.boot();
    w.input(Input::Shutdown { force: false })
        .unwrap_or_default();
    w.settle();
    assert!(w.state("a").is_alive());
    // stop_timeout (10s by default) is shorter than the 30s shutdown deadline.
    w.advance(Duration::from_secs(10));
    assert!(!w.state("a").is_alive());
    assert!(!w.state("b").is_alive());

    let mut w = World::new("  a:\n    command: x\n    stop_timeout: 60s\n");
    w.stubborn = vec![0];
    w.boot();
    w.input(Input::Shutdown { force: false })
        .unwrap_or_default();
    w.advance(Duration::from_secs(30));
    assert!(
        w.messages("a")
            .iter()
            .any(|m| m.starts_with("killing process group")),
        "{:?}",
        w.messages("a")
    );
    w.settle();
    assert_eq!(w.state("a"), &ProcState::Stopped);
}

// ---- the development loop (#17) ------------------------------------------

#[test]
fn a_restart_for_a_reason_says_why_and_is_not_queued_twice() {
    let mut w = World::new("  a:\n    command: x\n");
    w.boot();
    let why = |w: &mut World| {
        w.input(Input::RestartFor {
            names: names(&["a"]),
            reason: "src/main.rs changed".into(),
        })
    };
    why(&mut w).unwrap_or_default();
    assert!(w.messages("a").contains(
        &"src/main.rs changed: restarting: sent SIGTERM to process group 101".to_string()
    ));
    // A burst of changes while it stops: one restart.
    why(&mut w).unwrap_or_default();
    why(&mut w).unwrap_or_default();
    let sigterms = w
        .log
        .iter()
        .filter(|e| matches!(e, Effect::Signal { signal, .. } if *signal == libc::SIGTERM))
        .count();
    assert_eq!(sigterms, 1);
    // Still waiting for the sweep of its escapees: pending, not queued again.
    let (_, pid) = w.live[&0];
    w.exits.clear();
    w.exit("a", Exit::Signal(libc::SIGTERM));
    assert_eq!(w.m.procs()[0].restarts, 1);
    why(&mut w).unwrap_or_default();
    assert_eq!(w.m.procs()[0].restarts, 1);
    w.settle();
    assert_eq!(w.spawns("a"), 2);
    assert_eq!(w.state("a"), &ProcState::Ready);
    assert!(pid > 0);
    // A user restart of a pending process counts, as it always did.
    let mut w = World::new("  a:\n    command: x\n    auto_start: false\n");
    w.boot();
    w.input(Input::Restart(names(&["a"]))).unwrap_or_default();
    assert_eq!(w.m.procs()[0].restarts, 1);
}

#[test]
fn start_with_dependencies_starts_the_stopped_ones_first() {
    let mut w = World::new(
        "  db:\n    command: x\n  migrate:\n    command: x\n    one_shot: true\n    depends_on: { db: started }\n  web:\n    command: x\n    depends_on: { db: started, migrate: completed_successfully }\n",
    );
    w.boot();
    w.exit("migrate", Exit::Code(0));
    assert_eq!(w.state("web"), &ProcState::Ready);
    w.input(Input::Stop(names(&["db", "web"])))
        .unwrap_or_default();
    w.settle();
    assert_eq!(w.state("db"), &ProcState::Stopped);
    // A plain start leaves db stopped: web cannot start.
    w.input(Input::Start(names(&["web"]))).unwrap_or_default();
    assert_eq!(
        w.state("web"),
        &ProcState::Failed {
            reason: "dependency db was stopped".into()
        }
    );
    w.input(Input::StartWithDeps(names(&["web"])))
        .unwrap_or_default();
    assert_eq!(w.state("db"), &ProcState::Ready);
    assert_eq!(w.state("web"), &ProcState::Ready);
    // The task that completed is not run again.
    assert_eq!(w.spawns("migrate"), 1);
    assert_eq!(w.spawns("db"), 2);
}

#[test]
fn processes_can_be_added_removed_and_replaced() {
    let mut w =
        World::new("  a:\n    command: x\n  b:\n    command: x\n    depends_on: { a: started }\n");
    w.boot();
    let mut extra = space(
        "  a:\n    command: x\n  worker-3:\n    command: y\n    depends_on: { a: started }\n",
    );
    let rp = extra.remove(1);
    w.input(Input::Add(Box::new(rp.clone())))
        .unwrap_or_default();
    assert!(w.log.contains(&Effect::Added { index: 2 }));
    assert_eq!(w.state("worker-3"), &ProcState::Ready);
    assert!(w.input(Input::Add(Box::new(rp))).is_err());

    // Removing a dependency: it stops, leaves, and nothing waits for it.
    w.input(Input::Remove("a".into())).unwrap_or_default();
    assert_eq!(w.state("a"), &ProcState::Stopping { escalated: false });
    w.settle();
    assert!(w.log.contains(&Effect::Removed { index: 0 }));
    assert!(w.m.procs()[0].removed);
    assert!(
        w.messages("a")
            .contains(&"removed from the space".to_string())
    );
    assert!(w.input(Input::Start(names(&["a"]))).is_err());
    w.input(Input::Restart(names(&["b"]))).unwrap_or_default();
    w.settle();
    assert_eq!(w.state("b"), &ProcState::Ready);

    // Replacing a running process: stop, then start with the new spec.
    let mut new_b = w.m.procs()[1].rp.clone();
    new_b.argv = vec!["z".into()];
    w.input(Input::Replace(Box::new(new_b))).unwrap_or_default();
    assert!(
        w.messages("b")
            .iter()
            .any(|m| m.starts_with("the config changed: restarting"))
    );
    assert_eq!(w.m.procs()[1].rp.argv, ["/bin/sh", "-c", "x"]);
    let spawns = w.spawns("b");
    w.settle();
    assert!(w.log.contains(&Effect::Replaced { index: 1 }));
    assert_eq!(w.m.procs()[1].rp.argv, ["z"]);
    assert_eq!(w.spawns("b"), spawns + 1);
    assert_eq!(w.state("b"), &ProcState::Ready);

    // Replacing a stopped one changes nothing else.
    w.input(Input::Stop(names(&["worker-3"])))
        .unwrap_or_default();
    w.settle();
    let mut new_w = w.m.procs()[2].rp.clone();
    new_w.argv = vec!["w".into()];
    w.input(Input::Replace(Box::new(new_w))).unwrap_or_default();
    assert_eq!(w.m.procs()[2].rp.argv, ["w"]);
    assert_eq!(w.state("worker-3"), &ProcState::Stopped);
}

#[test]
fn an_update_takes_the_new_spec_without_a_restart() {
    let mut w = World::new("  a:\n    command: x\n  b:\n    command: x\n");
    w.boot();
    assert_eq!(w.state("b"), &ProcState::Ready);
    let mut new_b = w.m.procs()[1].rp.clone();
    new_b.config.profiles = vec!["dev".into()];
    new_b.config.depends_on = vec![config::Dependency {
        name: "a".into(),
        condition: DependCondition::Started,
    }];
    w.input(Input::Update(Box::new(new_b))).unwrap_or_default();
    w.settle();
    assert_eq!(w.state("b"), &ProcState::Ready);
    assert_eq!(w.spawns("b"), 1, "no restart");
    assert_eq!(w.m.procs()[1].rp.config.profiles, ["dev"]);
    // The new dependency counts from b's next start: stop a, restart b.
    w.input(Input::Stop(names(&["a"]))).unwrap_or_default();
    w.settle();
    w.input(Input::Restart(names(&["b"]))).unwrap_or_default();
    w.settle();
    assert_ne!(w.state("b"), &ProcState::Ready);
    assert!(
        w.input(Input::Update(Box::new(w.m.procs()[0].rp.clone())))
            .is_ok()
    );
    let mut ghost = w.m.procs()[0].rp.clone();
    ghost.name = "ghost".into();
    assert!(w.input(Input::Update(Box::new(ghost))).is_err());
}

// ---- properties -------------------------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    Start(usize),
    Stop(usize),
    Restart(usize),
    Kill(usize),
    Exit(usize, Exit),
    Advance(u64),
    Settle,
    ProbeOk(usize),
    HealthFail(usize),
    Memory(usize),
    Shutdown(bool),
    RestartFor(usize),
    Replace(usize),
    Remove(usize),
    StartWithDeps(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let i = 0..3usize;
    prop_oneof![
        i.clone().prop_map(Op::Start),
        i.clone().prop_map(Op::Stop),
        i.clone().prop_map(Op::Restart),
        i.clone().prop_map(Op::Kill),
        (
            i.clone(),
            prop_oneof![
                Just(Exit::Code(0)),
                Just(Exit::Code(1)),
                Just(Exit::Signal(11))
            ]
        )
            .prop_map(|(i, e)| Op::Exit(i, e)),
        (0..5_000u64).prop_map(Op::Advance),
        Just(Op::Settle),
        i.clone().prop_map(Op::ProbeOk),
        i.clone().prop_map(Op::HealthFail),
        i.clone().prop_map(Op::Memory),
        prop::bool::weighted(0.3).prop_map(Op::Shutdown),
        i.clone().prop_map(Op::RestartFor),
        i.clone().prop_map(Op::Replace),
        (0..30usize).prop_map(Op::Remove),
        i.clone().prop_map(Op::StartWithDeps),
    ]
}

/// One process of a random space: policy, one_shot, a readiness probe,
/// auto_start, max_restarts, and the condition on the one before it.
type Params = (
    RestartPolicy,
    bool,
    bool,
    bool,
    Option<u32>,
    DependCondition,
);

fn params() -> impl Strategy<Value = Params> {
    (
        prop::sample::select(vec![
            RestartPolicy::No,
            RestartPolicy::OnFailure,
            RestartPolicy::Always,
        ]),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop::option::of(0..3u32),
        prop::sample::select(vec![
            DependCondition::Started,
            DependCondition::Ready,
            DependCondition::CompletedSuccessfully,
        ]),
    )
}

/// Three processes a ← b ← c, parsed once and varied field by field.
fn random_space(ps: &[Params]) -> Vec<ResolvedProcess> {
    thread_local! {
        static BASE: Vec<ResolvedProcess> = space(
            "  a:\n    command: x\n    stop_timeout: 1s\n    max_memory: 1M\n    ready: { exec: probe }\n    health: { exec: h, failure_threshold: 1 }\n    backoff: { initial: 100ms, max: 2s, multiplier: 2 }\n  b:\n    command: x\n    stop_timeout: 1s\n    max_memory: 1M\n    ready: { exec: probe }\n    health: { exec: h, failure_threshold: 1 }\n    backoff: { initial: 100ms, max: 2s, multiplier: 2 }\n    depends_on: { a: started }\n  c:\n    command: x\n    stop_timeout: 1s\n    max_memory: 1M\n    ready: { exec: probe }\n    health: { exec: h, failure_threshold: 1 }\n    backoff: { initial: 100ms, max: 2s, multiplier: 2 }\n    depends_on: { b: started }\n",
        );
    }
    let mut procs = BASE.with(|b| b.clone());
    for (p, &(policy, one_shot, probe, auto, max, cond)) in procs.iter_mut().zip(ps) {
        p.config.restart_policy = policy;
        p.config.one_shot = one_shot;
        p.config.auto_start = auto;
        p.config.max_restarts = max;
        if !probe {
            p.ready = None;
        }
        for d in &mut p.config.depends_on {
            d.condition = cond;
        }
    }
    procs
}

fn apply(w: &mut World, op: &Op) {
    let name = |i: usize| vec![["a", "b", "c"][i].to_string()];
    let gen_of = |w: &World, i: usize| w.m.procs()[i].generation;
    match *op {
        Op::Start(i) => drop(w.input(Input::Start(name(i)))),
        Op::Stop(i) => drop(w.input(Input::Stop(name(i)))),
        Op::Restart(i) => drop(w.input(Input::Restart(name(i)))),
        Op::Kill(i) => drop(w.input(Input::Kill(name(i)))),
        Op::Exit(i, e) => w.exit_index(i, e),
        Op::Advance(ms) => w.advance(Duration::from_millis(ms)),
        Op::Settle => w.settle(),
        Op::ProbeOk(i) => {
            let generation = gen_of(w, i);
            drop(w.input(Input::Probe {
                index: i,
                generation,
                result: Ok(()),
            }))
        }
        Op::HealthFail(i) => {
            let generation = gen_of(w, i);
            drop(w.input(Input::Health {
                index: i,
                generation,
                result: Err("x".into()),
            }))
        }
        Op::Memory(i) => drop(w.input(Input::Memory {
            index: i,
            rss: 2 << 20,
        })),
        Op::Shutdown(force) => drop(w.input(Input::Shutdown { force })),
        Op::RestartFor(i) => drop(w.input(Input::RestartFor {
            names: name(i),
            reason: "a file changed".into(),
        })),
        Op::Replace(i) => {
            let mut rp = w.m.procs()[i].rp.clone();
            rp.argv.push("again".into());
            drop(w.input(Input::Replace(Box::new(rp))))
        }
        // Rare: most histories keep all three.
        Op::Remove(i) if i < 3 => drop(w.input(Input::Remove(name(i).remove(0)))),
        Op::Remove(_) => {}
        Op::StartWithDeps(i) => drop(w.input(Input::StartWithDeps(name(i)))),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// Never two live runs of one process, never a respawn before the sweep
    /// (both asserted by the World on every spawn), status agrees with the
    /// world, and a stale timer never does anything.
    #[test]
    fn random_histories_keep_the_invariants(
        ps in prop::collection::vec(params(), 3),
        stubborn in prop::collection::vec(any::<bool>(), 3),
        ops in prop::collection::vec(op(), 1..30),
    ) {
        let mut w = World::of(random_space(&ps));
        w.stubborn = (0..3).filter(|&i| stubborn[i]).collect();
        w.boot();
        for (step, op) in ops.iter().enumerate() {
            apply(&mut w, op);
            w.check();
            // A timer of an older generation is ignored.
            for i in [step % 3] {
                let g = w.m.procs()[i].generation;
                if g == 0 {
                    continue;
                }
                let before: Vec<ProcState> = w.m.procs().iter().map(|p| p.state.clone()).collect();
                w.clear_log();
                for timer in [Timer::RestartDue, Timer::Escalate] {
                    let _ = w.input(Input::Timer { index: i, generation: g - 1, timer });
                }
                prop_assert!(w.log.is_empty(), "{:?}", w.log);
                let after: Vec<ProcState> = w.m.procs().iter().map(|p| p.state.clone()).collect();
                prop_assert_eq!(before, after);
            }
        }
        // Whatever happened, a shutdown ends with nothing alive within the
        // stop timeouts, and the space down after one sweep.
        let _ = w.input(Input::Shutdown { force: false });
        w.settle();
        w.advance(Duration::from_secs(3));
        w.settle();
        for p in w.m.procs() {
            prop_assert!(!p.state.is_alive(), "{} {:?}", p.name(), p.state);
        }
        prop_assert!(w.live.is_empty());
        prop_assert!(w.run_swept);
        let _ = w.input(Input::SweepDone);
        prop_assert!(w.m.is_down());
    }

    /// A stop always ends in an exit within stop_timeout (plus the SIGKILL).
    #[test]
    fn a_stop_ends_within_stop_timeout(
        ps in params(),
        stubborn in any::<bool>(),
        timeout_ms in 1..10_000u64,
        alive_ms in 0..100_000u64,
    ) {
        let mut procs = random_space(&[ps]);
        procs.truncate(1);
        procs[0].ready = None;
        procs[0].health = None;
        procs[0].config.auto_start = true;
        procs[0].config.stop_timeout = Duration::from_millis(timeout_ms);
        let mut w = World::of(procs);
        if stubborn {
            w.stubborn.push(0);
        }
        w.boot();
        w.clock += Duration::from_millis(alive_ms);
        let _ = w.input(Input::Stop(names(&["a"])));
        w.settle();
        w.advance(Duration::from_millis(timeout_ms));
        w.settle();
        prop_assert_eq!(w.state("a"), &ProcState::Stopped);
        w.advance(Duration::from_secs(600));
        w.settle();
        prop_assert_eq!(w.spawns("a"), 1);
    }
}

#[test]
fn a_change_does_not_start_what_the_user_stopped_and_records_why() {
    let mut w = World::new("  a:\n    command: x\n  b:\n    command: x\n    auto_start: false\n");
    w.boot();
    let change = |w: &mut World, name: &str| {
        w.input(Input::RestartFor {
            names: names(&[name]),
            reason: "src/main.rs changed".into(),
        })
    };
    // Never started: stays idle.
    change(&mut w, "b").unwrap_or_default();
    w.settle();
    assert_eq!(w.state("b"), &ProcState::Idle);
    assert_eq!(w.spawns("b"), 0);
    assert_eq!(w.m.procs()[1].last_restart_reason, None);
    // Running: restarted, and status knows why.
    change(&mut w, "a").unwrap_or_default();
    w.settle();
    assert_eq!(w.spawns("a"), 2);
    assert_eq!(
        w.m.procs()[0].last_restart_reason.as_deref(),
        Some("src/main.rs changed")
    );
    // Stopped by the user: a change leaves it stopped.
    w.input(Input::Stop(names(&["a"]))).unwrap_or_default();
    change(&mut w, "a").unwrap_or_default();
    w.settle();
    assert_eq!(w.state("a"), &ProcState::Stopped);
    change(&mut w, "a").unwrap_or_default();
    w.settle();
    assert_eq!(w.state("a"), &ProcState::Stopped);
    assert_eq!(w.spawns("a"), 2);
    // A user restart has no reason: the last one is forgotten.
    w.input(Input::Restart(names(&["a"]))).unwrap_or_default();
    w.settle();
    assert_eq!(w.m.procs()[0].last_restart_reason, None);
}

#[test]
fn a_change_with_a_signal_action_signals_a_running_group_only() {
    let mut w = World::new("  a:\n    command: x\n  b:\n    command: x\n    auto_start: false\n");
    w.boot();
    let (_, pid) = w.live[&0];
    let hup = |w: &mut World, name: &str| {
        w.input(Input::SignalFor {
            names: names(&[name]),
            signal: libc::SIGHUP,
            reason: "app.conf changed".into(),
        })
    };
    hup(&mut w, "a").unwrap_or_default();
    hup(&mut w, "b").unwrap_or_default();
    let hups: Vec<&Effect> = w
        .log
        .iter()
        .filter(|e| matches!(e, Effect::Signal { signal, .. } if *signal == libc::SIGHUP))
        .collect();
    assert_eq!(
        hups,
        vec![&Effect::Signal {
            pid,
            signal: libc::SIGHUP
        }]
    );
    assert!(w.messages("a").contains(&format!(
        "app.conf changed: sent SIGHUP to process group {pid}"
    )));
    assert_eq!(w.state("a"), &ProcState::Ready);
    assert!(hup(&mut w, "nope").is_err());
    // A warning is a line, not a state change.
    w.input(Input::Warn {
        name: "b".into(),
        message: "watch: src does not exist; not watching".into(),
    })
    .unwrap_or_default();
    assert_eq!(w.state("b"), &ProcState::Idle);
    assert!(
        w.messages("b")
            .contains(&"watch: src does not exist; not watching".to_string())
    );
}
