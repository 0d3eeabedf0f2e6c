//! Validation of `kind = "test"` accounts (`[accounts.test]`): the fake provider's knobs.

#[allow(unused_imports)]
use super::*;

pub(super) fn test_settings(
    c: &mut Check<'_>,
    key: &str,
    rt: Option<&RawTest>,
) -> Option<TestSettings> {
    let default = RawTest::default();
    let rt = rt.unwrap_or(&default);
    let fail_child = match rt.fail_child.as_deref().map(str::trim) {
        None => None,
        Some("history_sync") => Some(TestChild::HistorySync),
        Some("backfill") => Some(TestChild::Backfill),
        Some("ingest") => Some(TestChild::Ingest),
        Some(other) => {
            c.issue(
                &format!("{key}.fail_child"),
                format!("must be \"history_sync\", \"backfill\" or \"ingest\", got {other:?}"),
            );
            None
        }
    };
    let completions_file = match &rt.completions_file {
        Some(path) => Some(c.path(&format!("{key}.completions_file"), path)?),
        None => None,
    };
    Some(TestSettings {
        messages: c.int(&format!("{key}.messages"), rt.messages, 20, 0, 10_000_000),
        fail_child,
        fail_times: c.int(&format!("{key}.fail_times"), rt.fail_times, 0, 0, 1_000_000) as u32,
        completions_file,
        job_delay: Duration::from_millis(c.int(
            &format!("{key}.job_delay_ms"),
            rt.job_delay_ms,
            0,
            0,
            3_600_000,
        )),
    })
}
