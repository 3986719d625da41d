//! Property tests: no input to the config loader, interpolation or unit
//! parsers may panic, and every configuration error carries a location.

use std::path::Path;

use mew::config::{ConfigError, interpolate, parse_duration, parse_size, parse_yaml};
use proptest::prelude::*;

/// Fragments that make random documents look like space.yaml files.
fn yamlish() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "processes:\n",
        "participants:\n",
        "gateway:\n",
        "space:\n",
        "  ",
        "    ",
        "a:",
        "b:",
        " command: ",
        "\"sleep 1\"",
        " depends_on: ",
        "[a, b]",
        "{ a: ready }",
        " ready: ",
        "{ log: x }",
        "{ http: 1 }",
        " args: ",
        "[x, y]",
        " env: ",
        "{ K: v }",
        " backoff: ",
        "{ initial: 10s }",
        " max_memory: ",
        "5Q",
        " stop_signal: ",
        "TERMX",
        "&a ",
        "*a",
        "- ",
        "\n",
        ": ",
        "{",
        "}",
        "[",
        "]",
        "#",
        "'",
        "\"",
        "${PORT}",
        "$$",
        "\t",
        "~",
        "null",
        "restart_policy: always",
        "one_shot: yes",
        "auto_start: false",
        "disabled: true",
    ]);
    prop::collection::vec(pieces, 0..60).prop_map(|v| v.concat())
}

fn check_errors_located(
    result: Result<mew::config::SpaceConfig, ConfigError>,
) -> Result<(), TestCaseError> {
    if let Err(e) = result {
        for d in e.errors() {
            prop_assert!(d.loc.is_some(), "error without a location: {}", d.message);
        }
        // The rendered report never panics and names the file.
        let text = e.to_string();
        prop_assert!(text.contains("space.yaml"), "{text}");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    #[test]
    fn yaml_like_documents_never_panic(doc in yamlish()) {
        let path = Path::new("/tmp/x/.mew/space.yaml");
        check_errors_located(parse_yaml(&doc, path, Path::new("/tmp/x")))?;
    }

    #[test]
    fn arbitrary_text_never_panics(doc in "\\PC{0,400}") {
        let path = Path::new("/tmp/x/.mew/space.yaml");
        check_errors_located(parse_yaml(&doc, path, Path::new("/tmp/x")))?;
    }

    #[test]
    fn durations_and_sizes_never_panic(s in "\\PC{0,24}") {
        let _ = parse_duration(&s);
        let _ = parse_size(&s);
    }

    #[test]
    fn durations_round_trip(n in 0u64..1_000_000, unit in prop::sample::select(vec!["ms", "s", "m", "h"])) {
        let d = parse_duration(&format!("{n}{unit}")).map_err(TestCaseError::fail)?;
        let ms = match unit { "ms" => n, "s" => n * 1000, "m" => n * 60_000, _ => n * 3_600_000 };
        prop_assert_eq!(d.as_millis() as u64, ms);
    }

    #[test]
    fn interpolation_never_panics_and_escapes_dollars(s in "[a-z${}:\\-_ ]{0,60}") {
        let (out, _) = interpolate(&s, &|name| (name == "X").then(|| "x".to_string()));
        // Without any `$`, interpolation is the identity.
        if !s.contains('$') {
            prop_assert_eq!(out, s);
        }
    }

    #[test]
    fn escaped_dollars_are_literal(s in "[a-z ]{0,20}") {
        let (out, unset) = interpolate(&format!("$${{{s}}}"), &|_| None);
        prop_assert_eq!(out, format!("${{{s}}}"));
        prop_assert!(unset.is_empty());
    }
}
