use super::*;

/// An environment provider that matches no variable.
fn env(_: &[(&str, &str)]) -> Env {
    Env::prefixed("MEGATORRENT_TEST_NOTHING_MATCHES_")
}

#[test]
fn printed_defaults_parse_back() {
    let text = Config::defaults_toml();
    let cfg: Config = toml::from_str(&text).unwrap();
    assert_eq!(cfg, Config::default());
    assert!(Config::default().validate().is_ok());
}

#[test]
fn file_layers_over_defaults_and_unknown_keys_fail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "[http]\nlisten = \"127.0.0.1:7000\"\n").unwrap();
    let cfg = Config::load_from(Some(&path), env(&[])).unwrap();
    assert_eq!(cfg.http.listen.port(), 7000);
    assert_eq!(cfg.database, DatabaseConfig::default());

    std::fs::write(&path, "[http]\nlisten = \"127.0.0.1:7000\"\nbogus = 1\n").unwrap();
    let err = Config::load_from(Some(&path), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("bogus"), "{err}");

    let missing = dir.path().join("nope.toml");
    assert!(matches!(
        Config::load_from(Some(&missing), env(&[])),
        Err(ConfigError::MissingFile(_))
    ));
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail API fixes the error type
fn environment_overrides_and_ignores_flat_names() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("MEGATORRENT_DATABASE__URL", "postgres://u:pw@db:5432/x");
        jail.set_env("MEGATORRENT_LIMITS__MAX_MANIFEST_BYTES", "2048");
        // Client variables and Kubernetes service links must not break the server.
        jail.set_env("MEGATORRENT_SERVER", "http://x");
        jail.set_env("MEGATORRENT_PORT", "tcp://10.0.0.1:6969");
        let cfg = Config::load(None).map_err(|e| e.to_string())?;
        assert_eq!(cfg.database.url, "postgres://u:pw@db:5432/x");
        assert_eq!(cfg.limits.max_manifest_bytes, 2048);
        assert!(!format!("{cfg:?}").contains("pw"));
        jail.set_env("MEGATORRENT_HTTP__NOPE", "1");
        assert!(Config::load(None).is_err());
        Ok(())
    });
}

#[test]
fn validation_reports_every_problem() {
    let mut cfg = Config::default();
    cfg.limits.max_manifest_bytes = 10;
    cfg.database.url = "mysql://x".into();
    let Err(ConfigError::Invalid(errs)) = cfg.validate() else {
        panic!("expected invalid");
    };
    assert_eq!(errs.len(), 2, "{errs:?}");
}

#[test]
fn tracker_and_udp_sections_are_checked() {
    let mut cfg = Config::default();
    cfg.tracker.access = AccessMode::Allowlist;
    cfg.tracker.min_interval_secs = cfg.tracker.interval_secs + 1;
    cfg.tracker.default_numwant = 500;
    cfg.tracker.max_peer_age_secs = 10;
    cfg.udp.workers = 65;
    let Err(ConfigError::Invalid(errs)) = cfg.validate() else {
        panic!("expected invalid");
    };
    let text = errs.join("\n");
    for key in [
        "tracker.access_list_file",
        "tracker.min_interval_secs",
        "tracker.default_numwant",
        "tracker.max_peer_age_secs",
        "udp.workers",
    ] {
        assert!(text.contains(key), "{key} not reported: {text}");
    }
    let parsed: Config = toml::from_str(
        "[tracker]\naccess = \"denylist\"\naccess_list_file = \"/x\"\nprivate = true\n\
         [udp]\nenabled = false\n",
    )
    .unwrap();
    assert_eq!(parsed.tracker.access, AccessMode::Denylist);
    assert!(parsed.tracker.private && !parsed.udp.enabled);
    assert!(parsed.validate().is_ok());
    assert!(toml::from_str::<Config>("[tracker]\naccess = \"maybe\"\n").is_err());
    assert!(toml::from_str::<Config>("[udp]\nbogus = 1\n").is_err());
}

#[test]
fn onion_section_is_checked() {
    let mut cfg = Config::default();
    assert!(!cfg.onion.enabled);
    assert_eq!(
        (cfg.onion.port, cfg.onion.key_dir.as_path()),
        (80, std::path::Path::new("onion"))
    );
    cfg.onion.enabled = true;
    // Only a build with the embedded onion service accepts `enabled = true`.
    assert_eq!(cfg.validate().is_ok(), cfg!(feature = "onion-server"));
    cfg.onion.enabled = false;
    cfg.onion.port = 0;
    cfg.onion.bootstrap_timeout_secs = 0;
    let Err(ConfigError::Invalid(errs)) = cfg.validate() else {
        panic!("expected invalid");
    };
    assert_eq!(errs.len(), 2, "{errs:?}");
    let toml = "[onion]\nenabled = false\nport = 8080\ntor_config = \"/x/arti.toml\"\n";
    let parsed: Config = toml::from_str(toml).unwrap();
    assert_eq!(parsed.onion.port, 8080);
    assert_eq!(
        parsed.onion.tor_config.as_deref(),
        Some(std::path::Path::new("/x/arti.toml"))
    );
    assert!(toml::from_str::<Config>("[onion]\nbogus = 1\n").is_err());
}

#[test]
fn url_file_is_read_and_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("url");
    std::fs::write(&secret, "postgres://a:b@h/db\n").unwrap();
    let path = dir.path().join("c.toml");
    let toml = format!(
        "[database]\nurl_file = {:?}\n",
        secret.display().to_string()
    );
    std::fs::write(&path, toml).unwrap();
    let cfg = Config::load_from(Some(&path), env(&[])).unwrap();
    assert_eq!(cfg.database.url, "postgres://a:b@h/db");
}

#[test]
fn redaction() {
    assert_eq!(
        redact_url("postgres://u:p@h:5/db"),
        "postgres://u:***@h:5/db"
    );
    assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
    assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    assert_eq!(
        redact_url("postgres://u:p@ss@h/db"),
        "postgres://u:***@h/db"
    );
}
