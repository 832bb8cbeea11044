use super::*;

#[test]
fn families_build_and_zero_series_exist() {
    let m = Metrics::new();
    assert!(m.families.is_some());
    let text = m.encode().unwrap();
    assert!(text.contains("megatorrent_build_info{version=\""), "{text}");
    assert!(
        text.contains("megatorrent_publishes_total{kind=\"manifest\",result=\"conflict\"} 0"),
        "{text}"
    );
    assert!(text.contains("megatorrent_rate_limited_total{limiter=\"key\"} 0"));
    m.publish(PublishKind::Pointer, PublishResult::Created);
    let text = m.encode().unwrap();
    assert!(text.contains("megatorrent_publishes_total{kind=\"pointer\",result=\"created\"} 1"));
}

#[test]
fn snapshot_collectors_register_and_bad_names_are_reported() {
    let m = Metrics::new();
    let c = SnapshotCollector::new().family(
        "megatorrent_test_events_total",
        "Test events.",
        SnapshotKind::Counter,
        &["result"],
        || vec![(vec!["ok"], 4.0), (vec!["too", "many"], 1.0)],
    );
    m.register_snapshot(c).unwrap();
    let text = m.encode().unwrap();
    assert!(
        text.contains("megatorrent_test_events_total{result=\"ok\"} 4"),
        "{text}"
    );
    assert!(!text.contains("result=\"too\""));
    let bad = SnapshotCollector::new().family("bad name", "x", SnapshotKind::Gauge, &[], Vec::new);
    assert!(matches!(
        m.register_snapshot(bad),
        Err(MetricsError::Invalid(_))
    ));
}

#[test]
fn publishes_are_recognised_and_classified() {
    assert_eq!(
        publish_kind("/v1/manifests/{key}", &Method::PUT),
        Some(PublishKind::Manifest)
    );
    assert_eq!(
        publish_kind("/announce", &Method::POST),
        Some(PublishKind::Pointer)
    );
    assert_eq!(publish_kind("/v1/manifests/{key}", &Method::GET), None);
    assert_eq!(publish_kind("/announce", &Method::GET), None);
    for (status, result) in [
        (StatusCode::CONFLICT, PublishResult::Conflict),
        (StatusCode::PAYLOAD_TOO_LARGE, PublishResult::TooLarge),
        (StatusCode::TOO_MANY_REQUESTS, PublishResult::RateLimited),
        (
            StatusCode::PRECONDITION_REQUIRED,
            PublishResult::PowRequired,
        ),
        (StatusCode::INSUFFICIENT_STORAGE, PublishResult::StoreFull),
        (StatusCode::FORBIDDEN, PublishResult::Invalid),
        (StatusCode::REQUEST_TIMEOUT, PublishResult::Invalid),
        (StatusCode::SERVICE_UNAVAILABLE, PublishResult::Error),
    ] {
        assert_eq!(publish_result_of(status), result, "{status}");
    }
}

#[test]
fn status_classes() {
    assert_eq!(status_class(StatusCode::OK), "2xx");
    assert_eq!(status_class(StatusCode::TOO_MANY_REQUESTS), "4xx");
    assert_eq!(status_class(StatusCode::BAD_GATEWAY), "5xx");
    assert_eq!(method_label(&Method::PATCH), "other");
}
