//! `mew space export --format kubernetes`: one pod per space.
//!
//! - `space.yaml`: a Deployment (`replicas: 1`, strategy `Recreate`) whose
//!   pod holds every process of the space as a container, and, with a
//!   gateway, a ClusterIP Service for its port.
//! - `secret.yaml` (0600): the Secret `<space>-tokens` (each participant's
//!   `MEW_TOKEN_<ID>`) and the Secret `<space>-env` (the values read from
//!   `env_file`s, which may be secrets too). The containers get them through
//!   `valueFrom.secretKeyRef`: no value of either is in `space.yaml`.
//!
//! **Why one pod.** A MEW space's participants join `ws://localhost:${PORT}`
//! and its processes talk to each other on `localhost`; the containers of a
//! pod share one network namespace, so that keeps working as is, which
//! separate Deployments (one pod, one IP each) would break.
//!
//! **Start order.** Containers of a pod start together, but init containers
//! start one at a time, and a restartable init container (a "sidecar",
//! `restartPolicy: Always`, Kubernetes 1.29+) counts as started once its
//! `startupProbe` succeeded. So, in start order:
//! - a one-shot task is an init container (the next one starts once it
//!   exited 0: `completed_successfully`);
//! - a long-running process that another one depends on is a sidecar, with
//!   its `ready` probe as its `startupProbe` when a dependent waits for
//!   `ready` (the next one starts once it is ready);
//! - every other process is a regular container: they start together, once
//!   every init container is done or started.
//!
//! Dependencies are therefore enforced by Kubernetes, at the price of being
//! stricter: an init container waits for every init container before it,
//! not only for its own dependencies (a note says so for each process).
//!
//! Every string scalar is a YAML double-quoted string (multi-line scripts a
//! literal block), and every `$` that Kubernetes would expand in `command`,
//! `args` and `env` values (`$(NAME)`, `$$`) is escaped: a space is exported
//! already resolved, as `check` resolves it. `${TOKEN}` alone becomes
//! `$(MEW_TOKEN_<ID>)`, which Kubernetes expands from the Secret.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::{Export, File, Input, TokenRef};
use crate::config::{
    Backoff, DependCondition, HealthAction, ProbeKind, ProcKind, ResolvedProcess, RestartPolicy,
};

/// How a command line refers to a token's variable: a marker (the
/// variable's name between two NULs, which no argument can hold) that
/// [`expand_escape`] turns into `$(MEW_TOKEN_<ID>)` after escaping every
/// literal `$(` of the line, and [`shell_ref`] into `${MEW_TOKEN_<ID>}`.
pub(crate) const TOKEN_REF: TokenRef = |var| format!("{MARK}{var}{MARK}");

const MARK: char = '\u{0}';

/// The image when `--image` is not given: it has `/bin/sh` and the usual
/// tools (`sleep`, `date`, `printf`, `mkfifo`), not mew itself.
pub(crate) const DEFAULT_IMAGE: &str = "debian:stable-slim";

/// `startupProbe.failureThreshold`: mew probes `ready` until it succeeds,
/// however long that takes; Kubernetes would kill the container after
/// `failureThreshold` failures, so the largest value (never, in practice).
pub(crate) const STARTUP_FAILURE_THRESHOLD: i64 = i32::MAX as i64;

/// Kubernetes' own defaults, for the notes.
const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_SCROLLBACK: usize = 2000;

/// How a process is run in the pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// A one-shot task: an init container.
    Task,
    /// A long-running process something depends on: a restartable init container.
    Sidecar,
    /// A regular container.
    Main,
}

pub(crate) fn render(input: &Input<'_>) -> Export {
    let mut e = Export::default();
    let cfg = input.cfg;
    let space = space_name(&cfg.id);
    let image = input
        .image
        .clone()
        .unwrap_or_else(|| DEFAULT_IMAGE.to_owned());
    let dir = cfg.dir.display().to_string();

    // Which processes are exported.
    let mut procs: Vec<&ResolvedProcess> = Vec::new();
    for p in &input.processes {
        if p.config.disabled {
            e.note(
                Some(&p.name),
                "disabled",
                "not exported (a disabled process is never started)",
            );
        } else if !p.config.auto_start {
            e.note(
                Some(&p.name),
                "auto_start",
                "not exported: every container of a pod starts with it, none waits to be \
                 started by hand; add it to the pod by hand to run it",
            );
        } else {
            procs.push(p);
        }
    }
    let exported: HashSet<&str> = procs.iter().map(|p| p.name.as_str()).collect();
    let by_name: HashMap<&str, &ResolvedProcess> =
        procs.iter().map(|p| (p.name.as_str(), *p)).collect();

    // Container names: DNS-1123 labels, unique.
    let mut used = HashSet::new();
    let fifo_container = if cfg.fifos.is_empty() {
        None
    } else {
        Some(unique("mew-fifos", &mut used))
    };
    let mut cname: HashMap<&str, String> = HashMap::new();
    for p in &procs {
        let base = dns_label(&p.name, 63);
        let base = if base.is_empty() {
            "process".to_owned()
        } else {
            base
        };
        let n = unique(&base, &mut used);
        if n != p.name {
            e.note(
                Some(&p.name),
                "name",
                format!("the container is named `{n}` (a DNS-1123 label)"),
            );
        }
        cname.insert(p.name.as_str(), n);
    }

    // Roles.
    let mut dependents: HashMap<&str, Vec<(&str, DependCondition)>> = HashMap::new();
    for p in &procs {
        for d in &p.config.depends_on {
            if exported.contains(d.name.as_str()) {
                dependents
                    .entry(d.name.as_str())
                    .or_default()
                    .push((p.name.as_str(), d.condition));
            } else {
                e.note(
                    Some(&p.name),
                    &format!("depends_on.{}", d.name),
                    format!(
                        "`{}` is not exported: `{}` starts without waiting for it",
                        d.name, p.name
                    ),
                );
            }
        }
    }
    let mut role: HashMap<&str, Role> = HashMap::new();
    for p in &procs {
        let r = if p.config.one_shot {
            Role::Task
        } else if dependents.contains_key(p.name.as_str()) {
            Role::Sidecar
        } else {
            Role::Main
        };
        role.insert(p.name.as_str(), r);
    }
    let mut placeholder = false;
    if !procs.is_empty() && !role.values().any(|r| *r == Role::Main) {
        // A pod needs a regular container: the last sidecar that no later
        // init container depends on becomes one.
        let mut moved = false;
        for (i, p) in procs.iter().enumerate().rev() {
            if role[p.name.as_str()] != Role::Sidecar {
                continue;
            }
            let later_depends = procs[i + 1..].iter().any(|q| {
                q.config
                    .depends_on
                    .iter()
                    .any(|d| d.name == p.name && role[q.name.as_str()] != Role::Main)
            });
            if !later_depends {
                role.insert(p.name.as_str(), Role::Main);
                moved = true;
                break;
            }
        }
        placeholder = !moved;
    }

    // Notes on dependencies: what Kubernetes does instead.
    let init_order: Vec<&str> = procs
        .iter()
        .map(|p| p.name.as_str())
        .filter(|n| role[n] != Role::Main)
        .collect();
    for p in &procs {
        let mine = role[p.name.as_str()];
        for d in &p.config.depends_on {
            let Some(dep) = by_name.get(d.name.as_str()) else {
                continue;
            };
            let key = format!("depends_on.{}", d.name);
            match (role[d.name.as_str()], d.condition) {
                (Role::Task, DependCondition::CompletedSuccessfully) => {}
                (Role::Task, c) => e.note(
                    Some(&p.name),
                    &key,
                    format!(
                        "`{}` instead of `{}`: `{}` is an init container, which runs to its \
                         end before the next one starts",
                        "completed_successfully",
                        cond_name(c),
                        d.name
                    ),
                ),
                (_, DependCondition::CompletedSuccessfully) => e.note(
                    Some(&p.name),
                    &key,
                    format!(
                        "`started` instead: `{}` is not a one-shot task, its container is \
                         restarted when it exits",
                        d.name
                    ),
                ),
                (_, DependCondition::Ready) => {
                    if let Some(r) = &dep.ready
                        && matches!(r.kind, ProbeKind::Log { .. })
                    {
                        e.note(
                            Some(&p.name),
                            &key,
                            format!(
                                "`started` instead: `{}`'s `log` readiness probe is not \
                                 expressible",
                                d.name
                            ),
                        );
                    }
                }
                (_, DependCondition::Started) => {}
            }
        }
        let deps = transitive_deps(p, &by_name);
        let before: Vec<&str> = match mine {
            Role::Main => init_order.clone(),
            _ => init_order
                .iter()
                .take_while(|n| **n != p.name)
                .copied()
                .collect(),
        };
        let extra: Vec<String> = before
            .iter()
            .filter(|n| !deps.contains(**n))
            .map(|n| format!("`{n}`"))
            .collect();
        if !extra.is_empty() {
            let why = if mine == Role::Main {
                "a regular container starts once every init container is done or started"
            } else {
                "init containers start one at a time, in start order"
            };
            e.note(
                Some(&p.name),
                "depends_on",
                format!("also waits for {}: {why}", extra.join(", ")),
            );
        }
    }

    // Secrets.
    let token_secret = format!("{space}-tokens");
    let env_secret = format!("{space}-env");
    let mut env_data: Vec<(String, String)> = Vec::new();
    let token_of: HashMap<String, &str> = input
        .tokens
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str()))
        .collect();

    let labels = json!({
        "app.kubernetes.io/name": "mew-space",
        "app.kubernetes.io/instance": space,
        "app.kubernetes.io/managed-by": "mew",
    });

    // Containers.
    let mut init_containers = Vec::new();
    let mut containers = Vec::new();
    let mut stop_signal_used = false;
    let mount = json!([{ "name": "space", "mountPath": dir }]);
    if let Some(n) = &fifo_container {
        let mut script = String::from("set -e\numask 077\n");
        let fdir = crate::config::fifo_dir(&cfg.dir);
        let _ = writeln!(
            script,
            "mkdir -p {}",
            crate::human::shell_quote(&fdir.display().to_string())
        );
        let _ = writeln!(
            script,
            "chmod 700 {}",
            crate::human::shell_quote(&fdir.display().to_string())
        );
        let mut paths = Vec::new();
        for f in &cfg.fifos {
            paths.push(f.input_path(&cfg.dir));
            if f.output {
                paths.push(f.output_path(&cfg.dir));
            }
            e.note(
                Some(&f.name),
                "fifo",
                format!(
                    "its FIFOs are made by the init container `{n}` (with the image's \
                     `mkfifo`) in the space directory on the node, and left there when the \
                     pod stops; write to them on the node or with `kubectl exec`"
                ),
            );
        }
        let list: Vec<String> = paths
            .iter()
            .map(|p| crate::human::shell_quote(&p.display().to_string()))
            .collect();
        let _ = writeln!(
            script,
            "for f in {}; do\n  [ -p \"$f\" ] || {{ rm -f \"$f\"; mkfifo -m 600 \"$f\"; }}\ndone",
            list.join(" ")
        );
        init_containers.push(json!({
            "name": n,
            "image": image,
            "command": ["/bin/sh", "-c", expand_escape(&script)],
            "workingDir": dir,
            "volumeMounts": mount.clone(),
        }));
    }

    let mut has_gateway = false;
    for p in &procs {
        let r = role[p.name.as_str()];
        let name = cname[p.name.as_str()].clone();
        let who = Some(p.name.as_str());
        let mut c = Map::new();
        c.insert("name".into(), json!(name));
        c.insert("image".into(), json!(image));
        if r == Role::Sidecar {
            c.insert("restartPolicy".into(), json!("Always"));
        }
        // Command line.
        let mut argv = p.argv.clone();
        if p.config.native {
            if let Some(a0) = argv.first_mut() {
                *a0 = "mew".to_owned();
            }
            if p.kind == ProcKind::Gateway {
                argv.push("--host".to_owned());
                argv.push("0.0.0.0".to_owned());
                e.note(
                    who,
                    "command",
                    "mew's gateway runs with `--host 0.0.0.0`: the kubelet probes it and \
                     the Service reaches it at the pod's IP, not on 127.0.0.1",
                );
            }
        }
        if let Some((a0, rest)) = argv.split_first() {
            c.insert("command".into(), json!([expand_escape(a0)]));
            if !rest.is_empty() {
                let rest: Vec<String> = rest.iter().map(|a| expand_escape(a)).collect();
                c.insert("args".into(), json!(rest));
            }
        }
        if !p.cwd.starts_with(&cfg.dir) {
            e.note(
                who,
                "cwd",
                format!(
                    "`{}` is outside the space directory, which is all the pod mounts: \
                     the image must have it",
                    p.cwd.display()
                ),
            );
        }
        c.insert(
            "workingDir".into(),
            json!(plain_ref(&p.cwd.display().to_string())),
        );
        // Environment: the tokens first (a value may refer to them), then the
        // process's own, `env_file` values from the Secret.
        let mut env = Vec::new();
        let token_vars: Vec<String> = match p.kind {
            ProcKind::Gateway => input.tokens.iter().map(|(k, _)| k.clone()).collect(),
            ProcKind::Participant => {
                let v = crate::config::token_env_name(&p.name);
                if token_of.contains_key(&v) {
                    vec![v]
                } else {
                    vec![]
                }
            }
            ProcKind::Process => vec![],
        };
        for v in &token_vars {
            env.push(json!({
                "name": v,
                "valueFrom": { "secretKeyRef": { "name": token_secret, "key": v } },
            }));
        }
        let from_file = p
            .config
            .env_file_vars
            .iter()
            .filter(|(k, _)| !k.starts_with("MEW_TOKEN_"))
            .count();
        let last: HashMap<&str, usize> = p
            .env
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (k.as_str(), i))
            .collect();
        for (i, (k, v)) in p.env.iter().enumerate() {
            if last.get(k.as_str()) != Some(&i) || token_vars.contains(k) {
                continue;
            }
            if i < from_file {
                let key = secret_key(&name, k, i);
                env_data.push((key.clone(), v.clone()));
                env.push(json!({
                    "name": k,
                    "valueFrom": { "secretKeyRef": { "name": env_secret, "key": key } },
                }));
            } else {
                env.push(json!({ "name": k, "value": expand_escape(v) }));
            }
        }
        if !env.is_empty() {
            c.insert("env".into(), Value::Array(env));
        }
        if p.kind == ProcKind::Gateway {
            c.insert(
                "ports".into(),
                json!([{ "name": "gateway", "containerPort": cfg.gateway_port, "protocol": "TCP" }]),
            );
            has_gateway = true;
            if !p.config.native {
                e.note(
                    who,
                    "command",
                    format!(
                        "the Service reaches it at the pod's IP: it must listen on 0.0.0.0 \
                         port {}, not only on 127.0.0.1",
                        cfg.gateway_port
                    ),
                );
            }
        }
        if let Some(m) = p.config.max_memory {
            c.insert(
                "resources".into(),
                json!({ "limits": { "memory": quantity(m) } }),
            );
        }
        // Probes.
        let probes_allowed = r != Role::Task;
        let ready = match &p.ready {
            Some(probe) => match &probe.kind {
                ProbeKind::Log { regex } => {
                    e.note(
                        who,
                        "ready.log",
                        format!(
                            "dropped: Kubernetes cannot probe output (/{regex}/); the \
                             container is ready once started"
                        ),
                    );
                    None
                }
                _ if !probes_allowed => {
                    e.note(
                        who,
                        "ready",
                        "dropped: an init container has no probes; it is done when it exits 0",
                    );
                    None
                }
                kind => probe_handler(kind, p, "ready", &mut e).map(|h| (h, probe)),
            },
            None => None,
        };
        let health = match &p.health {
            Some(_) if !probes_allowed => {
                e.note(who, "health", "dropped: an init container has no probes");
                None
            }
            Some(h) if h.action == HealthAction::None => {
                e.note(
                    who,
                    "health.action",
                    "dropped: Kubernetes has no check that only reports (a readinessProbe \
                     would take the pod out of its Service, a livenessProbe restarts)",
                );
                None
            }
            Some(h) => probe_handler(&h.probe.kind, p, "health", &mut e).map(|x| (x, h)),
            None => None,
        };
        let waited_ready = dependents
            .get(p.name.as_str())
            .is_some_and(|ds| ds.iter().any(|(_, c)| *c == DependCondition::Ready));
        if let Some((handler, probe)) = &ready {
            if (r == Role::Sidecar && waited_ready) || health.is_some() {
                let mut s = handler.clone();
                timing(&mut s, probe, p, "", &mut e);
                s.insert("failureThreshold".into(), json!(STARTUP_FAILURE_THRESHOLD));
                c.insert("startupProbe".into(), Value::Object(s));
            }
            let mut s = handler.clone();
            timing(&mut s, probe, p, "ready", &mut e);
            s.insert(
                "failureThreshold".into(),
                json!(probe.failure_threshold.max(1)),
            );
            c.insert("readinessProbe".into(), Value::Object(s));
        }
        if let Some((handler, h)) = &health {
            let mut s = handler.clone();
            timing(&mut s, &h.probe, p, "health", &mut e);
            s.insert(
                "failureThreshold".into(),
                json!(h.probe.failure_threshold.max(1)),
            );
            s.insert(
                "terminationGracePeriodSeconds".into(),
                json!(secs_ceil(p.config.stop_timeout).max(1)),
            );
            c.insert("livenessProbe".into(), Value::Object(s));
        }
        // Stop.
        if p.config.stop_signal.name != "SIGTERM" {
            if r == Role::Task {
                e.note(
                    who,
                    "stop_signal",
                    "dropped: an init container has no lifecycle; it gets SIGTERM",
                );
            } else {
                stop_signal_used = true;
                c.insert(
                    "lifecycle".into(),
                    json!({ "stopSignal": p.config.stop_signal.name }),
                );
                e.note(
                    who,
                    "stop_signal",
                    format!(
                        "`lifecycle.stopSignal: {}` (and the pod's `os.name: linux`): \
                         Kubernetes 1.33+ with the ContainerStopSignals feature gate; an API \
                         server without the gate drops it and one before 1.33 refuses it \
                         (remove it there): the container then gets SIGTERM",
                        p.config.stop_signal.name
                    ),
                );
            }
        }
        if p.config.stop_timeout != DEFAULT_STOP_TIMEOUT {
            let liveness = if health.is_some() {
                " and applies to its liveness restarts \
                 (`livenessProbe.terminationGracePeriodSeconds`)"
            } else {
                ""
            };
            e.note(
                who,
                "stop_timeout",
                format!(
                    "a container has no stop timeout of its own: when the pod stops, every \
                     container gets the pod's `terminationGracePeriodSeconds` ({}s, from \
                     `shutdown_timeout`){liveness}",
                    secs_ceil(cfg.shutdown_timeout).max(1)
                ),
            );
        }
        // Restarts.
        restart_notes(p, r, &mut e);
        if p.config.scrollback != DEFAULT_SCROLLBACK {
            e.note(
                who,
                "scrollback",
                "dropped: there is no TUI; `kubectl logs` keeps the output",
            );
        }
        c.insert("stdin".into(), json!(true));
        c.insert("tty".into(), json!(true));
        c.insert("volumeMounts".into(), mount.clone());
        match r {
            Role::Main => containers.push(Value::Object(c)),
            _ => init_containers.push(Value::Object(c)),
        }
    }
    if placeholder || procs.is_empty() {
        let n = unique("idle", &mut used);
        e.note(
            None,
            "processes",
            format!(
                "no long-running process can be the pod's regular container: `{n}` \
                 (an idle shell) is one, so that the pod runs"
            ),
        );
        containers.push(json!({
            "name": n,
            "image": image,
            "command": ["/bin/sh", "-c", "while :; do sleep 3600; done"],
        }));
    }

    // Space-level notes.
    e.note(
        None,
        "space.dir",
        format!(
            "mounted from the node with a hostPath volume at its own path ({dir}), so every \
             path of the space keeps working: the pod must run on the node that has it \
             (a single-node cluster, or pin it with a nodeSelector), and the namespace must \
             allow hostPath volumes (Pod Security `privileged`)"
        ),
    );
    e.note(
        None,
        "restart_policy",
        "the pod's `restartPolicy` is `Always` (a Deployment's): Kubernetes restarts any \
         container that exits, with its own back-off (10s doubling up to 5m, reset after 10m \
         of running) instead of `backoff`",
    );
    e.note(
        None,
        "logs",
        "each container's output goes to `kubectl logs -c NAME`, rotated by the kubelet \
         (containerLogMaxSize); mew's log files, `logs.rotate_size`, `logs.keep` and the \
         upstream `logs/` links are not made",
    );
    e.note(
        None,
        "environment",
        "the processes get the image's environment plus the space's (env, env_file, MEW_*), \
         not the environment mew was started from",
    );
    if procs.iter().any(|p| p.config.native) && input.image.is_none() {
        e.note(
            None,
            "image",
            format!(
                "the default image `{DEFAULT_IMAGE}` has no `mew`, which the gateway, MCP \
                 bridges and FIFO clients run: give `--image` an image with `mew` on its PATH"
            ),
        );
    }
    if !cfg.ui_keys.is_empty() {
        e.note(None, "ui.keys", "dropped: there is no TUI");
    }

    // The manifests.
    let mut meta = Map::new();
    meta.insert("name".into(), json!(space));
    meta.insert("labels".into(), labels.clone());
    let mut ann = Map::new();
    ann.insert("mew/space".into(), json!(cfg.id));
    ann.insert("mew/name".into(), json!(cfg.name));
    if let Some(d) = &cfg.description {
        ann.insert("mew/description".into(), json!(d));
    }
    meta.insert("annotations".into(), Value::Object(ann));

    let mut pod = Map::new();
    pod.insert("restartPolicy".into(), json!("Always"));
    pod.insert(
        "terminationGracePeriodSeconds".into(),
        json!(secs_ceil(cfg.shutdown_timeout).max(1)),
    );
    pod.insert("shareProcessNamespace".into(), json!(true));
    pod.insert("enableServiceLinks".into(), json!(false));
    if stop_signal_used {
        pod.insert("os".into(), json!({ "name": "linux" }));
    }
    if let Some((uid, gid)) = owner(&cfg.dir) {
        pod.insert(
            "securityContext".into(),
            json!({ "runAsUser": uid, "runAsGroup": gid }),
        );
    }
    if !init_containers.is_empty() {
        pod.insert("initContainers".into(), Value::Array(init_containers));
    }
    let default_container = containers
        .first()
        .and_then(|c| c.get("name"))
        .cloned()
        .unwrap_or(Value::Null);
    pod.insert("containers".into(), Value::Array(containers));
    pod.insert(
        "volumes".into(),
        json!([{ "name": "space", "hostPath": { "path": dir, "type": "Directory" } }]),
    );

    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": Value::Object(meta),
        "spec": {
            "replicas": 1,
            "strategy": { "type": "Recreate" },
            "selector": { "matchLabels": {
                "app.kubernetes.io/name": "mew-space",
                "app.kubernetes.io/instance": space,
            } },
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": { "kubectl.kubernetes.io/default-container": default_container },
                },
                "spec": Value::Object(pod),
            },
        },
    });
    let mut docs = vec![deployment];
    if has_gateway {
        docs.push(json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": { "name": format!("{space}-gateway"), "labels": labels },
            "spec": {
                "type": "ClusterIP",
                "selector": {
                    "app.kubernetes.io/name": "mew-space",
                    "app.kubernetes.io/instance": space,
                },
                "ports": [{ "name": "gateway", "port": cfg.gateway_port, "targetPort": "gateway", "protocol": "TCP" }],
            },
        }));
    }
    let header = format!(
        "# The space `{}` for Kubernetes, made by `mew space export --format kubernetes`.\n\
         # Apply with `kubectl apply -f secret.yaml -f space.yaml` (secret.yaml holds the tokens).\n",
        crate::config::escape(&cfg.id).replace('\n', " ")
    );
    e.files.push(File {
        path: PathBuf::from("space.yaml"),
        contents: header + &yaml_docs(&docs),
        mode: 0o644,
    });

    let mut secrets = Vec::new();
    if !input.tokens.is_empty() {
        let mut data = Map::new();
        for (k, v) in &input.tokens {
            data.insert(k.clone(), json!(v));
        }
        secrets.push(secret_doc(&token_secret, &labels, data));
    }
    if !env_data.is_empty() {
        let mut data = Map::new();
        for (k, v) in env_data {
            data.insert(k, json!(v));
        }
        secrets.push(secret_doc(&env_secret, &labels, data));
    }
    if !secrets.is_empty() {
        e.files.push(File {
            path: PathBuf::from("secret.yaml"),
            contents: format!(
                "# The secrets of the space `{}`: keep this file private (0600).\n{}",
                crate::config::escape(&cfg.id).replace('\n', " "),
                yaml_docs(&secrets)
            ),
            mode: 0o600,
        });
    }
    e
}

fn secret_doc(name: &str, labels: &Value, data: Map<String, Value>) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": { "name": name, "labels": labels },
        "type": "Opaque",
        "stringData": Value::Object(data),
    })
}

fn cond_name(c: DependCondition) -> &'static str {
    match c {
        DependCondition::Started => "started",
        DependCondition::Ready => "ready",
        DependCondition::CompletedSuccessfully => "completed_successfully",
    }
}

/// Every exported process `p` waits for, directly or not.
fn transitive_deps<'a>(
    p: &'a ResolvedProcess,
    by_name: &HashMap<&'a str, &'a ResolvedProcess>,
) -> HashSet<&'a str> {
    let mut seen = HashSet::new();
    let mut stack: Vec<&ResolvedProcess> = vec![p];
    while let Some(q) = stack.pop() {
        for d in &q.config.depends_on {
            if let Some((n, dp)) = by_name.get_key_value(d.name.as_str())
                && seen.insert(*n)
            {
                stack.push(dp);
            }
        }
    }
    seen
}

fn restart_notes(p: &ResolvedProcess, r: Role, e: &mut Export) {
    let who = Some(p.name.as_str());
    let policy = p.config.restart_policy;
    if r == Role::Task {
        // An init container is re-run until it exits 0: on-failure exactly.
        if policy == RestartPolicy::No {
            e.note(
                who,
                "restart_policy",
                "`on-failure` instead of `no`: a failed init container is run again until \
                 it succeeds",
            );
        }
    } else {
        match policy {
            RestartPolicy::Always => {}
            RestartPolicy::OnFailure => e.note(
                who,
                "restart_policy",
                "`always` instead of `on-failure`: a container of a Deployment's pod is \
                 restarted whenever it exits, also with status 0",
            ),
            RestartPolicy::No => e.note(
                who,
                "restart_policy",
                "`always` instead of `no`: a container of a Deployment's pod is restarted \
                 whenever it exits",
            ),
        }
    }
    if let Some(n) = p.config.max_restarts {
        e.note(
            who,
            "max_restarts",
            format!("dropped ({n}): Kubernetes restarts without a limit (CrashLoopBackOff)"),
        );
    }
    if p.config.backoff != Backoff::default() {
        e.note(
            who,
            "backoff",
            "dropped: Kubernetes' own back-off applies (10s doubling up to 5m)",
        );
    }
}

/// A probe's handler (`httpGet`, `tcpSocket`, `exec`), or `None` with a note.
fn probe_handler(
    kind: &ProbeKind,
    p: &ResolvedProcess,
    key: &str,
    e: &mut Export,
) -> Option<Map<String, Value>> {
    let who = Some(p.name.as_str());
    let mut m = Map::new();
    match kind {
        ProbeKind::Http { url } => {
            let Some(u) = parse_http_url(url) else {
                e.note(
                    who,
                    &format!("{key}.http"),
                    format!(
                        "dropped: `{}` is not an http://host[:port]/path URL Kubernetes can probe",
                        plain_ref(url)
                    ),
                );
                return None;
            };
            let mut g = Map::new();
            if !is_loopback(&u.host) {
                g.insert("host".into(), json!(u.host));
            } else if !(p.config.native && p.kind == ProcKind::Gateway) {
                e.note(
                    who,
                    &format!("{key}.http"),
                    format!(
                        "probed by the kubelet at the pod's IP instead of {}: the process \
                         must listen on 0.0.0.0, not only on the loopback",
                        u.host
                    ),
                );
            }
            g.insert("path".into(), json!(plain_ref(&u.path)));
            g.insert("port".into(), json!(u.port));
            g.insert("scheme".into(), json!("HTTP"));
            m.insert("httpGet".into(), Value::Object(g));
        }
        ProbeKind::Tcp { host, port } => {
            let Ok(port) = port.parse::<u16>() else {
                e.note(
                    who,
                    &format!("{key}.tcp"),
                    format!("dropped: the port `{}` is not a number", plain_ref(port)),
                );
                return None;
            };
            if port == 0 {
                e.note(who, &format!("{key}.tcp"), "dropped: port 0");
                return None;
            }
            let mut t = Map::new();
            if !is_loopback(host) {
                t.insert("host".into(), json!(plain_ref(host)));
            } else {
                e.note(
                    who,
                    &format!("{key}.tcp"),
                    format!(
                        "probed by the kubelet at the pod's IP instead of {host}: the process \
                         must listen on 0.0.0.0, not only on the loopback"
                    ),
                );
            }
            t.insert("port".into(), json!(port));
            m.insert("tcpSocket".into(), Value::Object(t));
        }
        ProbeKind::Exec { command } => {
            m.insert(
                "exec".into(),
                json!({ "command": ["/bin/sh", "-c", shell_ref(command)] }),
            );
        }
        ProbeKind::Log { .. } => return None,
    }
    Some(m)
}

/// `initialDelaySeconds`, `periodSeconds`, `timeoutSeconds` of a probe;
/// `key` (when not empty) names it in the notes of what was rounded up.
fn timing(
    m: &mut Map<String, Value>,
    probe: &crate::config::Probe,
    p: &ResolvedProcess,
    key: &str,
    e: &mut Export,
) {
    for (field, d, min) in [
        ("initialDelaySeconds", probe.initial_delay, 0),
        ("periodSeconds", probe.period, 1),
        ("timeoutSeconds", probe.timeout, 1),
    ] {
        let s = secs_ceil(d).max(min);
        if !key.is_empty() && u128::from(s.unsigned_abs()) * 1000 != d.as_millis() {
            let what = match field {
                "initialDelaySeconds" => "initial_delay",
                "periodSeconds" => "period",
                _ => "timeout",
            };
            e.note(
                Some(&p.name),
                &format!("{key}.{what}"),
                format!(
                    "{}ms rounded up to {s}s (Kubernetes counts whole seconds)",
                    d.as_millis()
                ),
            );
        }
        m.insert(field.into(), json!(s));
    }
}

fn secs_ceil(d: Duration) -> i64 {
    let ms = d.as_millis();
    i64::try_from(ms.div_ceil(1000)).unwrap_or(i64::MAX)
}

struct HttpUrl {
    host: String,
    port: u16,
    path: String,
}

fn parse_http_url(url: &str) -> Option<HttpUrl> {
    let rest = url.strip_prefix("http://")?;
    let (auth, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], rest[i..].to_owned()),
        None => (rest, "/".to_owned()),
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path
    };
    let path = path.split('#').next().unwrap_or("/").to_owned();
    if auth.contains('@') || auth.is_empty() {
        return None;
    }
    let (host, port) = if let Some(h) = auth.strip_prefix('[') {
        let (h, after) = h.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => 80,
            None => return None,
        };
        (h.to_owned(), port)
    } else {
        match auth.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p.parse().ok()?),
            None => (auth.to_owned(), 80),
        }
    };
    if host.is_empty() || port == 0 {
        return None;
    }
    Some(HttpUrl { host, port, path })
}

fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h == "0.0.0.0"
        || h == "::"
        || h.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback())
}

/// The owner of the space directory: the user the processes run as.
fn owner(dir: &std::path::Path) -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(dir).ok().map(|m| (m.uid(), m.gid()))
}

/// A memory size as a Kubernetes quantity.
fn quantity(bytes: u64) -> String {
    for (unit, size) in [("Gi", 1u64 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)] {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    bytes.to_string()
}

/// The space's name for its objects: a DNS-1035 label (it names a Service)
/// short enough for the suffixes (`-gateway`, `-tokens`).
fn space_name(id: &str) -> String {
    let s = dns_label(id, 40);
    if s.is_empty() {
        "mew-space".to_owned()
    } else if s.starts_with(|c: char| c.is_ascii_lowercase()) {
        s
    } else {
        dns_label(&format!("mew-{s}"), 40)
    }
}

/// `s` as a DNS-1123 label of at most `max` characters: lowercase letters,
/// digits and `-`, starting and ending with a letter or digit ("" if none).
pub(crate) fn dns_label(s: &str, max: usize) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.truncate(max);
    while out.ends_with('-') {
        out.pop();
    }
    out
}

fn unique(base: &str, used: &mut HashSet<String>) -> String {
    let mut n = base.to_owned();
    let mut i = 2;
    while used.contains(&n) {
        let suffix = format!("-{i}");
        let mut b = base.to_owned();
        b.truncate(63 - suffix.len());
        while b.ends_with('-') {
            b.pop();
        }
        n = format!("{b}{suffix}");
        i += 1;
    }
    used.insert(n.clone());
    n
}

/// The key of an `env_file` value in the `<space>-env` Secret.
fn secret_key(container: &str, var: &str, i: usize) -> String {
    let ok = !var.is_empty()
        && var
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        format!("{container}.{var}")
    } else {
        format!("{container}.env-{i}")
    }
}

/// A string of `command`, `args` or an `env` value, which Kubernetes
/// expands: every `$` that would start `$(` or `$$` is doubled, and a token
/// marker becomes `$(MEW_TOKEN_<ID>)`.
pub(crate) fn expand_escape(s: &str) -> String {
    let parts: Vec<&str> = s.split(MARK).collect();
    let marks_paired = !parts.len().is_multiple_of(2);
    let mut out = String::with_capacity(s.len());
    for (i, part) in parts.iter().enumerate() {
        if i % 2 == 1 && marks_paired {
            let _ = write!(out, "$({part})");
            continue;
        }
        let ref_follows = marks_paired && i + 1 < parts.len();
        let mut chars = part.chars().peekable();
        while let Some(c) = chars.next() {
            out.push(c);
            if c == '$' {
                let next = chars.peek().copied();
                if matches!(next, Some('$' | '(')) || (next.is_none() && ref_follows) {
                    out.push('$');
                }
            }
        }
    }
    out
}

/// A string Kubernetes does not expand, run by a shell (an `exec` probe):
/// a token marker becomes `${MEW_TOKEN_<ID>}`.
pub(crate) fn shell_ref(s: &str) -> String {
    replace_marks(s, |v| format!("${{{v}}}"))
}

/// A string nothing expands (a path, a URL): a token marker is written
/// `$(MEW_TOKEN_<ID>)`, for the reader.
fn plain_ref(s: &str) -> String {
    replace_marks(s, |v| format!("$({v})"))
}

fn replace_marks(s: &str, f: impl Fn(&str) -> String) -> String {
    let parts: Vec<&str> = s.split(MARK).collect();
    if parts.len().is_multiple_of(2) {
        return s.to_owned();
    }
    let mut out = String::new();
    for (i, part) in parts.iter().enumerate() {
        if i % 2 == 1 {
            out.push_str(&f(part));
        } else {
            out.push_str(part);
        }
    }
    out
}

// ---------------------------------------------------------------------
// YAML: block style, every string double-quoted (or a literal block).

/// Documents, each started with `---`.
pub(crate) fn yaml_docs(docs: &[Value]) -> String {
    let mut out = String::new();
    for d in docs {
        out.push_str("---\n");
        match d {
            Value::Object(m) if !m.is_empty() => write_map(&mut out, m, 0),
            Value::Array(a) if !a.is_empty() => write_list(&mut out, a, 0),
            v => {
                out.push_str(&scalar(v));
                out.push('\n');
            }
        }
    }
    out
}

fn write_map(out: &mut String, m: &Map<String, Value>, indent: usize) {
    let pad = " ".repeat(indent);
    for (k, v) in m {
        let _ = write!(out, "{pad}{}:", key(k));
        write_value(out, v, indent);
    }
}

fn write_list(out: &mut String, a: &[Value], indent: usize) {
    let pad = " ".repeat(indent);
    for v in a {
        match v {
            Value::Object(m) if !m.is_empty() => {
                let mut sub = String::new();
                write_map(&mut sub, m, indent + 2);
                out.push_str(&pad);
                out.push_str("- ");
                out.push_str(&sub[indent + 2..]);
            }
            Value::Array(l) if !l.is_empty() => {
                let mut sub = String::new();
                write_list(&mut sub, l, indent + 2);
                out.push_str(&pad);
                out.push_str("- ");
                out.push_str(&sub[indent + 2..]);
            }
            v => {
                let _ = write!(out, "{pad}-");
                write_value(out, v, indent);
            }
        }
    }
}

/// After `key:` or `-` at `indent`: the value, to the end of its lines.
fn write_value(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            write_map(out, m, indent + 2);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            write_list(out, a, indent + 2);
        }
        Value::String(s) if literal_ok(s) => {
            let body = s.strip_suffix('\n');
            out.push_str(if body.is_some() { " |\n" } else { " |-\n" });
            let pad = " ".repeat(indent + 2);
            for line in body.unwrap_or(s).split('\n') {
                if !line.is_empty() {
                    out.push_str(&pad);
                    out.push_str(line);
                }
                out.push('\n');
            }
        }
        v => {
            out.push(' ');
            out.push_str(&scalar(v));
            out.push('\n');
        }
    }
}

/// Whether a string reads back the same as a literal block scalar: several
/// lines, printable, no line starting the block with a blank, no trailing
/// blanks, at most one final newline.
fn literal_ok(s: &str) -> bool {
    let body = s.strip_suffix('\n').unwrap_or(s);
    body.contains('\n')
        && !body.ends_with('\n')
        && !body.starts_with([' ', '\t', '\n'])
        && body
            .chars()
            .all(|c| c == '\n' || c == '\t' || !needs_escape(c))
        && body.split('\n').all(|l| !l.ends_with([' ', '\t']))
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => quote(s),
        Value::Array(_) => "[]".to_owned(),
        Value::Object(_) => "{}".to_owned(),
    }
}

fn key(k: &str) -> String {
    let plain = k
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-'))
        && !matches!(
            k.to_ascii_lowercase().as_str(),
            "y" | "n" | "yes" | "no" | "true" | "false" | "on" | "off" | "null"
        );
    if plain { k.to_owned() } else { quote(k) }
}

use super::{needs_escape, yaml_quote as quote};

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn roundtrip(v: &Value) -> Value {
        let text = yaml_docs(std::slice::from_ref(v));
        serde_saphyr::from_str::<Value>(text.trim_start_matches("---\n"))
            .unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    #[test]
    fn quoting_roundtrips() {
        for s in [
            "hello world",
            "say \"hi\" \\ back",
            "$(date +%H:%M:%S) 100% ${HOME} $$",
            "a\nb\n",
            "a\nb",
            "  leading\nblank",
            "trailing \nblank",
            "tab\there\r\n",
            "nul\u{0}bel\u{7}del\u{7f}c1\u{85}ls\u{2028}ps\u{2029}bom\u{feff}",
            "yes",
            "null",
            "- not a list",
            "# not a comment",
            "key: value",
            "",
            "two\n\nblank lines\n",
            "ends with\n\n",
            "émoji 🐱",
        ] {
            let v = json!({ "k": s, "list": [s, { "n": s }], s: 1 });
            assert_eq!(roundtrip(&v), v, "{s:?}");
        }
    }

    #[test]
    fn multiline_is_a_literal_block() {
        let text = yaml_docs(&[json!({ "command": ["/bin/sh", "-c", "echo a\necho b\n"] })]);
        assert!(text.contains("  - |\n    echo a\n    echo b\n"), "{text}");
    }

    #[test]
    fn kubernetes_expansion_is_escaped() {
        assert_eq!(
            expand_escape("echo $(date) $$ $HOME $"),
            "echo $$(date) $$$ $HOME $"
        );
        assert_eq!(expand_escape("$((i + 1))"), "$$((i + 1))");
        assert_eq!(expand_escape("100%"), "100%");
        let r = TOKEN_REF("MEW_TOKEN_A");
        assert_eq!(
            expand_escape(&format!("--token={r}")),
            "--token=$(MEW_TOKEN_A)"
        );
        // A literal `$` right before the reference stays a `$`.
        assert_eq!(expand_escape(&format!("${r}")), "$$$(MEW_TOKEN_A)");
        assert_eq!(expand_escape(&format!("$({r})")), "$$($(MEW_TOKEN_A))");
        assert_eq!(shell_ref(&format!("check {r}")), "check ${MEW_TOKEN_A}");
    }

    /// Kubernetes' expansion (k8s.io/kubernetes third_party/forked/golang/expansion).
    fn k8s_expand(s: &str, vars: &HashMap<&str, &str>) -> String {
        let b: Vec<char> = s.chars().collect();
        let mut out = String::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == '$' && i + 1 < b.len() {
                match b[i + 1] {
                    '$' => {
                        out.push('$');
                        i += 2;
                        continue;
                    }
                    '(' => {
                        if let Some(end) = b[i + 2..].iter().position(|c| *c == ')') {
                            let name: String = b[i + 2..i + 2 + end].iter().collect();
                            match vars.get(name.as_str()) {
                                Some(v) => out.push_str(v),
                                None => {
                                    let _ = write!(out, "$({name})");
                                }
                            }
                            i += 3 + end;
                            continue;
                        }
                    }
                    _ => {}
                }
            }
            out.push(b[i]);
            i += 1;
        }
        out
    }

    #[test]
    fn escaped_strings_expand_to_themselves() {
        let vars = HashMap::from([("MEW_TOKEN_A", "tok"), ("HOME", "/root"), ("date", "x")]);
        for s in [
            "$(date)",
            "$$",
            "$$(date)",
            "a$",
            "$",
            "$((1+2))",
            "$(HOME) ${HOME}",
            "$$$(x",
        ] {
            assert_eq!(k8s_expand(&expand_escape(s), &vars), s, "{s:?}");
        }
        let r = TOKEN_REF("MEW_TOKEN_A");
        let s = format!("a $(date) ${r} {r}$ $$");
        assert_eq!(
            k8s_expand(&expand_escape(&s), &vars),
            "a $(date) $tok tok$ $$"
        );
    }

    #[test]
    fn names_are_dns_labels() {
        assert_eq!(dns_label("Echo_Agent.v2", 63), "echo-agent-v2");
        assert_eq!(dns_label("--x--", 63), "x");
        assert_eq!(dns_label("日本", 63), "");
        assert_eq!(space_name("123 go"), "mew-123-go");
        assert_eq!(space_name(""), "mew-space");
        assert_eq!(space_name(&"a".repeat(300)).len(), 40);
        let mut used = HashSet::new();
        assert_eq!(unique("a", &mut used), "a");
        assert_eq!(unique("a", &mut used), "a-2");
        assert_eq!(unique(&"b".repeat(63), &mut used).len(), 63);
        assert_eq!(
            unique(&"b".repeat(63), &mut used),
            format!("{}-2", "b".repeat(61))
        );
    }

    #[test]
    fn http_urls() {
        let u = parse_http_url("http://127.0.0.1:8080/health?x=1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 8080, "/health?x=1")
        );
        let u = parse_http_url("http://[::1]/").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 80));
        assert!(is_loopback("[::1]") && is_loopback("localhost") && !is_loopback("db"));
        assert!(parse_http_url("https://x/").is_none());
        assert!(parse_http_url("http://u:p@x/").is_none());
        assert_eq!(quantity(512 << 20), "512Mi");
        assert_eq!(quantity(1000), "1000");
    }
}
