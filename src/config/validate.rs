//! Cross-process checks: dependency targets, cycles, disabled dependencies.

use super::build::{Builder, GATEWAY_NAME};
use super::model::*;
use super::report::escape;
use super::suggest::did_you_mean;

/// Add the implicit gateway dependency, then check every dependency.
pub fn dependencies(
    b: &mut Builder<'_>,
    procs: &mut [ProcessConfig],
    non_process: &[ParticipantInfo],
) {
    let has_gateway = procs.iter().any(|p| p.kind == ProcKind::Gateway);
    if has_gateway {
        for (p, extra) in procs.iter_mut().zip(b.extras.iter_mut()) {
            let wants = match p.kind {
                ProcKind::Gateway => false,
                ProcKind::Participant => extra.depends_on_gateway != Some(false),
                ProcKind::Process => extra.depends_on_gateway == Some(true),
            };
            if wants && !p.depends_on.iter().any(|d| d.name == GATEWAY_NAME) {
                p.depends_on.insert(
                    0,
                    Dependency {
                        name: GATEWAY_NAME.to_owned(),
                        condition: DependCondition::Ready,
                    },
                );
                extra.dep_locs.insert(0, p.loc.clone());
                extra.implicit_gateway = true;
            }
        }
    }

    let names: Vec<&str> = procs.iter().map(|p| p.name.as_str()).collect();
    let mut edges: Vec<Vec<(usize, usize)>> = vec![Vec::new(); procs.len()];
    let mut problems: Vec<(Loc, String)> = Vec::new();
    let mut notes: Vec<(Loc, String)> = Vec::new();
    for (i, p) in procs.iter().enumerate() {
        let extra = &b.extras[i];
        for (d_idx, d) in p.depends_on.iter().enumerate() {
            let loc = extra
                .dep_locs
                .get(d_idx)
                .cloned()
                .unwrap_or_else(|| p.loc.clone());
            let implicit = extra.implicit_gateway && d_idx == 0;
            if d.name == p.name {
                problems.push((loc, format!("`{}` depends on itself", p.name)));
                continue;
            }
            let Some(j) = names.iter().position(|n| *n == d.name) else {
                let msg = if non_process.iter().any(|q| q.name == d.name) {
                    format!(
                        "`{}` depends on `{}`, which is a participant without a process (nothing to wait for)",
                        p.name, d.name
                    )
                } else {
                    let mut m = format!(
                        "`{}` depends on `{}`, which is not defined",
                        p.name,
                        escape(&d.name)
                    );
                    if let Some(s) = did_you_mean(&d.name, &names) {
                        m.push_str(&format!("\nhelp: did you mean `{s}`?"));
                    } else if !names.is_empty() {
                        m.push_str(&format!("\nhelp: defined processes: {}", names.join(", ")));
                    }
                    m
                };
                problems.push((loc, msg));
                continue;
            };
            edges[i].push((j, d_idx));
            let dep = &procs[j];
            if p.auto_start && !p.disabled && dep.disabled {
                let how = if implicit {
                    " (implicitly, as a participant)"
                } else {
                    ""
                };
                let help = if implicit {
                    "set `depends_on_gateway: false`, or enable the gateway"
                } else {
                    "remove the dependency, enable it, or set `auto_start: false` here"
                };
                problems.push((
                    loc,
                    format!(
                        "`{}` starts with the space but depends{how} on `{}`, which is disabled\nhelp: {help}",
                        p.name, d.name
                    ),
                ));
            } else if p.auto_start && !p.disabled && !dep.auto_start && !dep.disabled {
                notes.push((
                    loc,
                    format!(
                        "`{}` waits for `{}`, which has `auto_start: false`: it starts only after `{}` is started by hand",
                        p.name, d.name, d.name
                    ),
                ));
            }
        }
    }
    for (loc, msg) in problems {
        b.err(&loc, msg);
    }
    for (loc, msg) in notes {
        b.warn(Some(&loc), msg);
    }

    // Cycles: DFS with colours; each cycle reported once.
    let n = procs.len();
    let mut colour = vec![0u8; n];
    let mut seen_cycles: Vec<Vec<usize>> = Vec::new();
    for start in 0..n {
        if colour[start] != 0 {
            continue;
        }
        // Iterative DFS: stack of (node, next edge index).
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        colour[start] = 1;
        while let Some(&mut (v, ref mut ei)) = stack.last_mut() {
            if let Some(&(w, _)) = edges[v].get(*ei) {
                *ei += 1;
                match colour[w] {
                    0 => {
                        colour[w] = 1;
                        stack.push((w, 0));
                    }
                    1 => {
                        let pos = stack.iter().position(|(x, _)| *x == w).unwrap_or(0);
                        let cycle: Vec<usize> = stack[pos..].iter().map(|(x, _)| *x).collect();
                        let mut key = cycle.clone();
                        key.sort_unstable();
                        if !seen_cycles.contains(&key) {
                            seen_cycles.push(key);
                            let first = cycle[0];
                            let second = cycle.get(1).copied().unwrap_or(first);
                            let mut path: Vec<&str> = cycle.iter().map(|&x| names[x]).collect();
                            path.push(names[first]);
                            let d_idx = edges[first]
                                .iter()
                                .find(|(t, _)| *t == second)
                                .map(|(_, d)| *d)
                                .unwrap_or(0);
                            let loc = b.extras[first]
                                .dep_locs
                                .get(d_idx)
                                .cloned()
                                .unwrap_or_else(|| procs[first].loc.clone());
                            b.err(&loc, format!("dependency cycle: {}", path.join(" -> ")));
                        }
                    }
                    _ => {}
                }
            } else {
                colour[v] = 2;
                stack.pop();
            }
        }
    }
}

/// Start order: a topological order of the dependencies, ties broken by
/// config order (so the gateway comes first). Indices into `cfg.processes`.
pub fn start_order(cfg: &SpaceConfig) -> Vec<usize> {
    let procs = &cfg.processes;
    let n = procs.len();
    let deps: Vec<Vec<usize>> = procs
        .iter()
        .map(|p| {
            p.depends_on
                .iter()
                .filter_map(|d| procs.iter().position(|q| q.name == d.name))
                .collect()
        })
        .collect();
    let mut done = vec![false; n];
    let mut order = Vec::with_capacity(n);
    while order.len() < n {
        let next = (0..n).find(|&i| !done[i] && deps[i].iter().all(|&j| done[j] || j == i));
        // A cycle cannot pass `load`; if one is there anyway, take config order.
        let i = next.unwrap_or_else(|| (0..n).find(|&i| !done[i]).unwrap_or(0));
        done[i] = true;
        order.push(i);
    }
    order
}

/// Warn about tokens on command lines. A command line is visible to every
/// user of the machine (`ps`, `/proc/PID/cmdline`), and an exec probe's is
/// again at every period; the environment is not (`/proc/PID/environ` is the
/// owner's only). So `${TOKEN}` in a participant's `command`, `args` or
/// `exec` probe, or a literal `tokens:` value in any process's, is a warning.
pub fn token_exposure(b: &mut Builder<'_>, procs: &[ProcessConfig]) {
    let mut found: Vec<(Loc, String)> = Vec::new();
    for (p, extra) in procs.iter().zip(b.extras.iter()) {
        for (field, loc, text) in &extra.command_lines {
            let where_ = if field.ends_with(".exec") {
                "on the command line of an exec probe, run every period"
            } else {
                "on its command line"
            };
            let uses_token = p.kind == ProcKind::Participant && {
                let used = std::cell::Cell::new(false);
                let lookup = |name: &str| {
                    used.set(used.get() || name == "TOKEN");
                    None
                };
                super::interpolate(text, &lookup);
                used.get()
            };
            let literal = b
                .secret_tokens
                .iter()
                .any(|t| !t.is_empty() && text.contains(t.as_str()));
            let what = if uses_token {
                "`${TOKEN}`"
            } else if literal {
                "a token written in `tokens:`"
            } else {
                continue;
            };
            let help = if p.kind == ProcKind::Participant {
                format!(
                    "pass it in the environment: `{}` already has its token in `${}`; a program that reads another variable can get it with `env: {{ NAME: \"${{TOKEN}}\" }}`",
                    p.name,
                    super::token_env_name(&p.name)
                )
            } else {
                "pass it in the environment (`env:`), which only this user can read, and let the program read it from there".to_owned()
            };
            found.push((
                loc.clone(),
                format!(
                    "`{}` puts {what} {where_}: every user of this machine can read it in `ps`\nhelp: {help}",
                    escape(field)
                ),
            ));
        }
    }
    for (loc, msg) in found {
        b.warn(Some(&loc), msg);
    }
}
