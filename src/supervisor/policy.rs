//! Restart policy, backoff and the crash-loop guard: pure functions, no IO.
//!
//! Rules (documented in docs/space-yaml.md):
//! - An exit caused by a stop that mew or the user asked for is a clean stop:
//!   never restarted, never a failure.
//! - `no`: never restart. `on-failure`: restart after a non-zero exit or a
//!   death by signal. `always`: restart after any exit, except a `one_shot`
//!   process that exited 0 (it has done its job).
//! - The delay grows exponentially from `backoff.initial` by
//!   `backoff.multiplier` up to `backoff.max`. It resets to `initial` when the
//!   previous run stayed up for at least [`STABLE_UPTIME`].
//! - `max_restarts` counts restarts by policy since the last start by the
//!   user; reaching it gives up ("gave up after N restarts").
//! - A health check that failed its threshold (`action: restart`) restarts
//!   the process whatever `restart_policy` says (the check asked for it), and
//!   is counted like any restart: backoff, `max_restarts`, crash-loop guard.
//! - Crash-loop guard: a run that ends within [`FAST_FAILURE`] of its start is
//!   a fast failure; [`CRASH_LOOP_LIMIT`] of them in a row give up even when
//!   `max_restarts` is unlimited.

use std::time::Duration;

use crate::config::{Backoff, RestartPolicy};

/// A run shorter than this that fails counts towards the crash-loop guard.
pub const FAST_FAILURE: Duration = Duration::from_secs(1);
/// This many fast failures in a row stop the restarts.
pub const CRASH_LOOP_LIMIT: u32 = 10;
/// A run at least this long resets the backoff delay and the fast-failure count.
pub const STABLE_UPTIME: Duration = Duration::from_secs(30);

/// How one run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// Exited with this code on its own.
    Code(i32),
    /// Killed by a signal mew did not send.
    Signal(i32),
    /// The process could not be started at all.
    SpawnFailed,
    /// mew stopped it (user stop, restart, memory limit, space shutdown).
    Stopped,
    /// mew stopped it because its health check failed (`action: restart`).
    Unhealthy,
}

impl Ending {
    pub fn is_success(self) -> bool {
        matches!(self, Ending::Code(0) | Ending::Stopped)
    }
}

/// Restart bookkeeping carried across runs of one process.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RestartState {
    /// Restarts by policy since the user last started the process.
    pub since_user_start: u32,
    /// Consecutive fast failures.
    pub fast_failures: u32,
    /// The delay used for the previous restart (None: none yet / reset).
    pub last_delay: Option<Duration>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Restart after this delay.
    Restart { delay: Duration },
    /// Do not restart; the process stays in its final state.
    Stay,
    /// Stop restarting and mark the process failed with this reason.
    GiveUp { reason: String },
}

pub struct Policy<'a> {
    pub restart: RestartPolicy,
    pub max_restarts: Option<u32>,
    pub backoff: &'a Backoff,
    pub one_shot: bool,
}

/// Decide what follows a run that ended with `ending` after `uptime`, and
/// update `state` accordingly.
pub fn decide(
    policy: &Policy<'_>,
    ending: Ending,
    uptime: Duration,
    state: &mut RestartState,
) -> Decision {
    let wants_restart = match (policy.restart, ending) {
        (_, Ending::Stopped) => false,
        (_, Ending::Unhealthy) => true,
        (RestartPolicy::No, _) => false,
        (RestartPolicy::OnFailure, e) => !e.is_success(),
        (RestartPolicy::Always, Ending::Code(0)) => !policy.one_shot,
        (RestartPolicy::Always, _) => true,
    };
    if !wants_restart || policy.max_restarts == Some(0) {
        return Decision::Stay;
    }
    let stable = uptime >= STABLE_UPTIME;
    if stable {
        state.fast_failures = 0;
        state.last_delay = None;
    }
    if uptime < FAST_FAILURE && !ending.is_success() {
        state.fast_failures += 1;
    } else if !stable {
        state.fast_failures = 0;
    }
    if let Some(max) = policy.max_restarts
        && state.since_user_start >= max
    {
        return Decision::GiveUp {
            reason: format!("gave up after {max} restarts"),
        };
    }
    if state.fast_failures >= CRASH_LOOP_LIMIT {
        return Decision::GiveUp {
            reason: format!(
                "crash loop: ended within {}s of starting {} times in a row",
                FAST_FAILURE.as_secs(),
                state.fast_failures
            ),
        };
    }
    let delay = next_delay(policy.backoff, state.last_delay);
    state.last_delay = Some(delay);
    state.since_user_start += 1;
    Decision::Restart { delay }
}

/// The next backoff delay after `previous`.
pub fn next_delay(backoff: &Backoff, previous: Option<Duration>) -> Duration {
    match previous {
        None => backoff.initial.min(backoff.max),
        Some(prev) => {
            let next = prev.as_secs_f64() * backoff.multiplier.max(1.0);
            Duration::from_secs_f64(next.min(backoff.max.as_secs_f64()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(restart: RestartPolicy, max: Option<u32>, backoff: &Backoff) -> Policy<'_> {
        Policy {
            restart,
            max_restarts: max,
            backoff,
            one_shot: false,
        }
    }

    const LONG: Duration = Duration::from_secs(5);

    #[test]
    fn no_policy_never_restarts() {
        let b = Backoff::default();
        let mut st = RestartState::default();
        for e in [Ending::Code(0), Ending::Code(1), Ending::Signal(9)] {
            assert_eq!(
                decide(&policy(RestartPolicy::No, None, &b), e, LONG, &mut st),
                Decision::Stay
            );
        }
    }

    #[test]
    fn on_failure_restarts_only_failures() {
        let b = Backoff::default();
        let p = policy(RestartPolicy::OnFailure, None, &b);
        let mut st = RestartState::default();
        assert_eq!(decide(&p, Ending::Code(0), LONG, &mut st), Decision::Stay);
        assert!(matches!(
            decide(&p, Ending::Code(3), LONG, &mut st),
            Decision::Restart { .. }
        ));
        assert!(matches!(
            decide(&p, Ending::Signal(11), LONG, &mut st),
            Decision::Restart { .. }
        ));
        assert!(matches!(
            decide(&p, Ending::SpawnFailed, LONG, &mut st),
            Decision::Restart { .. }
        ));
    }

    #[test]
    fn a_stop_by_mew_is_never_restarted() {
        let b = Backoff::default();
        let mut st = RestartState::default();
        for r in [
            RestartPolicy::No,
            RestartPolicy::OnFailure,
            RestartPolicy::Always,
        ] {
            assert_eq!(
                decide(&policy(r, None, &b), Ending::Stopped, LONG, &mut st),
                Decision::Stay
            );
        }
    }

    #[test]
    fn always_restarts_success_except_one_shot() {
        let b = Backoff::default();
        let mut p = policy(RestartPolicy::Always, None, &b);
        let mut st = RestartState::default();
        assert!(matches!(
            decide(&p, Ending::Code(0), LONG, &mut st),
            Decision::Restart { .. }
        ));
        p.one_shot = true;
        assert_eq!(decide(&p, Ending::Code(0), LONG, &mut st), Decision::Stay);
        assert!(matches!(
            decide(&p, Ending::Code(1), LONG, &mut st),
            Decision::Restart { .. }
        ));
    }

    #[test]
    fn backoff_grows_and_caps() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(1000),
            multiplier: 3.0,
        };
        let p = policy(RestartPolicy::OnFailure, None, &b);
        let mut st = RestartState::default();
        let delays: Vec<_> = (0..5)
            .map(|_| match decide(&p, Ending::Code(1), LONG, &mut st) {
                Decision::Restart { delay } => delay.as_millis(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(delays, vec![100, 300, 900, 1000, 1000]);
        assert_eq!(st.since_user_start, 5);
    }

    #[test]
    fn stable_run_resets_backoff() {
        let b = Backoff::default();
        let p = policy(RestartPolicy::OnFailure, None, &b);
        let mut st = RestartState::default();
        decide(&p, Ending::Code(1), LONG, &mut st);
        decide(&p, Ending::Code(1), LONG, &mut st);
        assert_eq!(st.last_delay, Some(Duration::from_secs(1)));
        match decide(&p, Ending::Code(1), STABLE_UPTIME, &mut st) {
            Decision::Restart { delay } => assert_eq!(delay, b.initial),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn max_restarts_gives_up() {
        let b = Backoff::default();
        let p = policy(RestartPolicy::Always, Some(2), &b);
        let mut st = RestartState::default();
        assert!(matches!(
            decide(&p, Ending::Code(1), LONG, &mut st),
            Decision::Restart { .. }
        ));
        assert!(matches!(
            decide(&p, Ending::Code(1), LONG, &mut st),
            Decision::Restart { .. }
        ));
        assert_eq!(
            decide(&p, Ending::Code(1), LONG, &mut st),
            Decision::GiveUp {
                reason: "gave up after 2 restarts".into()
            }
        );
    }

    #[test]
    fn a_failed_health_check_restarts_under_any_policy_and_counts() {
        let b = Backoff::default();
        for r in [
            RestartPolicy::No,
            RestartPolicy::OnFailure,
            RestartPolicy::Always,
        ] {
            let p = policy(r, Some(1), &b);
            let mut st = RestartState::default();
            assert_eq!(
                decide(&p, Ending::Unhealthy, LONG, &mut st),
                Decision::Restart { delay: b.initial },
                "{r:?}"
            );
            assert_eq!(st.since_user_start, 1);
            // The same counter as crashes: the next restart is one too many.
            assert_eq!(
                decide(&p, Ending::Code(1), LONG, &mut st),
                if r == RestartPolicy::No {
                    Decision::Stay
                } else {
                    Decision::GiveUp {
                        reason: "gave up after 1 restarts".into(),
                    }
                }
            );
            assert_eq!(
                decide(&p, Ending::Unhealthy, LONG, &mut st),
                Decision::GiveUp {
                    reason: "gave up after 1 restarts".into()
                }
            );
        }
        let never = policy(RestartPolicy::Always, Some(0), &b);
        let mut st = RestartState::default();
        assert_eq!(
            decide(&never, Ending::Unhealthy, LONG, &mut st),
            Decision::Stay
        );
    }

    #[test]
    fn max_restarts_zero_means_never() {
        let b = Backoff::default();
        let p = policy(RestartPolicy::Always, Some(0), &b);
        let mut st = RestartState::default();
        assert_eq!(decide(&p, Ending::Code(1), LONG, &mut st), Decision::Stay);
    }

    #[test]
    fn crash_loop_guard_gives_up_on_fast_failures() {
        let b = Backoff::default();
        let p = policy(RestartPolicy::OnFailure, None, &b);
        let mut st = RestartState::default();
        let fast = Duration::from_millis(50);
        for _ in 0..CRASH_LOOP_LIMIT - 1 {
            assert!(matches!(
                decide(&p, Ending::Code(1), fast, &mut st),
                Decision::Restart { .. }
            ));
        }
        match decide(&p, Ending::Code(1), fast, &mut st) {
            Decision::GiveUp { reason } => assert!(reason.contains("crash loop"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_slow_failure_breaks_the_fast_failure_streak() {
        let b = Backoff::default();
        let p = policy(RestartPolicy::OnFailure, None, &b);
        let mut st = RestartState::default();
        let fast = Duration::from_millis(50);
        for _ in 0..CRASH_LOOP_LIMIT - 1 {
            decide(&p, Ending::Code(1), fast, &mut st);
        }
        decide(&p, Ending::Code(1), LONG, &mut st);
        assert_eq!(st.fast_failures, 0);
        assert!(matches!(
            decide(&p, Ending::Code(1), fast, &mut st),
            Decision::Restart { .. }
        ));
    }
}
