//! Tests of spec validation and size parsing.

use super::*;

#[test]
fn names() {
    for good in ["a", "agent-1", "0x_y", &"a".repeat(64)] {
        assert_eq!(validate_name(good), Ok(()), "{good}");
    }
    assert_eq!(validate_name(""), Err(SpecError::NameEmpty));
    assert!(matches!(
        validate_name(&"a".repeat(65)),
        Err(SpecError::NameTooLong { len: 65 })
    ));
    for (bad, ch) in [
        ("Agent", 'A'),
        ("a/b", '/'),
        ("..", '.'),
        ("a b", ' '),
        ("é", 'é'),
    ] {
        assert_eq!(
            validate_name(bad),
            Err(SpecError::NameCharacter {
                name: bad.into(),
                ch
            }),
            "{bad}"
        );
    }
    assert!(matches!(
        validate_name("-a"),
        Err(SpecError::NameStart { .. })
    ));
    assert!(matches!(
        validate_name("_a"),
        Err(SpecError::NameStart { .. })
    ));
}

#[test]
fn spec_checks() {
    let good = AgentSpec::new("worker", "/bin/sh");
    assert_eq!(good.validate(), Ok(()));
    let check = |change: &dyn Fn(&mut AgentSpec)| {
        let mut spec = good.clone();
        change(&mut spec);
        spec.validate()
    };
    assert_eq!(check(&|s| s.command.clear()), Err(SpecError::CommandEmpty));
    assert!(matches!(
        check(&|s| s.args.push("a\0b".into())),
        Err(SpecError::Nul { .. })
    ));
    assert!(matches!(
        check(&|s| s.args = vec![String::new(); MAX_ARGS + 1]),
        Err(SpecError::TooManyArgs { .. })
    ));
    assert!(matches!(
        check(&|s| {
            s.env.insert("A=B".into(), "x".into());
        }),
        Err(SpecError::EnvKey { .. })
    ));
    assert_eq!(check(&|s| s.ring = 0), Err(SpecError::Ring { ring: 0 }));
    assert_eq!(check(&|s| s.ring = 3), Err(SpecError::Ring { ring: 3 }));
    assert_eq!(check(&|s| s.ring = 1), Ok(()));
    assert!(matches!(
        check(&|s| s.limits.memory_bytes = Some(1024)),
        Err(SpecError::MemoryTooSmall { .. })
    ));
    assert!(matches!(
        check(&|s| s.limits.cpu_percent = Some(0)),
        Err(SpecError::CpuPercent { .. })
    ));
    assert_eq!(
        check(&|s| s.limits.max_processes = Some(0)),
        Err(SpecError::MaxProcessesZero)
    );
    // Messages name the problem and the fix.
    let message = validate_name("Bad").unwrap_err().to_string();
    assert!(message.contains("a-z"), "{message}");
}

#[test]
fn serde_defaults_and_names() {
    let spec: AgentSpec =
        serde_json::from_str(r#"{"name":"w","command":"/bin/true"}"#).expect("minimal spec");
    assert_eq!(spec, AgentSpec::new("w", "/bin/true"));
    assert_eq!(spec.ring, 2);
    assert_eq!(spec.restart, RestartPolicy::OnFailure);
    let json = serde_json::to_string(&RestartPolicy::OnFailure).expect("encode");
    assert_eq!(json, r#""on-failure""#);
    assert!(serde_json::from_str::<AgentSpec>(r#"{"name":"w","command":"x","bogus":1}"#).is_err());
    for policy in [
        RestartPolicy::Always,
        RestartPolicy::OnFailure,
        RestartPolicy::Never,
    ] {
        assert_eq!(policy.to_string().parse::<RestartPolicy>(), Ok(policy));
    }
    assert!("sometimes".parse::<RestartPolicy>().is_err());
}

#[test]
fn sizes() {
    assert_eq!(parse_size("4096"), Ok(4096));
    assert_eq!(parse_size("256M"), Ok(256 << 20));
    assert_eq!(parse_size("256m"), Ok(256 << 20));
    assert_eq!(parse_size("1G"), Ok(1 << 30));
    assert_eq!(parse_size("1GiB"), Ok(1 << 30));
    assert_eq!(parse_size("1 GB"), Ok(1 << 30));
    assert_eq!(parse_size("64k"), Ok(64 << 10));
    assert_eq!(parse_size("1.5G"), Ok(3 << 29));
    assert_eq!(parse_size(".5K"), Ok(512));
    assert_eq!(parse_size("2T"), Ok(2 << 40));
    for bad in ["", "M", "1X", "1.2.3M", "-1M", "1e3", "."] {
        assert!(
            matches!(parse_size(bad), Err(SizeError::Invalid { .. })),
            "{bad}"
        );
    }
    assert!(matches!(
        parse_size("99999999999999999999"),
        Err(SizeError::Overflow { .. })
    ));
    assert!(matches!(
        parse_size("16777216T"),
        Err(SizeError::Overflow { .. })
    ));
    assert_eq!(parse_size("16777215T"), Ok(16_777_215 << 40));
}

#[test]
fn size_round_trip() {
    for bytes in [0, 1, 1000, 1024, 256 << 20, 3 << 29, 1 << 30, 5 << 40] {
        assert_eq!(parse_size(&format_size(bytes)), Ok(bytes), "{bytes}");
    }
    assert_eq!(format_size(256 << 20), "256M");
    assert_eq!(format_size(3 << 29), "1536M");
}
