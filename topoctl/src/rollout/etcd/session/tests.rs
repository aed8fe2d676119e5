//! Unit tests of the lease bookkeeping the watchdog relies on.

use super::*;

fn state(until: Instant) -> LeaseState {
    LeaseState {
        confirmed_until: Mutex::new(until),
        lost: Mutex::new(None),
        json: false,
        armed: AtomicBool::new(true),
    }
}

#[test]
fn a_lease_holds_until_its_confirmed_deadline_only() {
    let now = Instant::now();
    let state = state(now + Duration::from_secs(5));
    assert!(state.check().is_ok());
    let expired = super::tests::state(now);
    let reason = expired.check().unwrap_err();
    assert!(
        reason.contains("could not be confirmed within its TTL"),
        "{reason}"
    );
}

#[test]
fn a_confirmation_never_moves_the_deadline_back() {
    let now = Instant::now();
    let state = state(now + Duration::from_secs(5));
    state.confirm(now + Duration::from_secs(1));
    assert!(state.check().is_ok());
    state.confirm(now);
    assert!(state.check().is_ok(), "an older confirmation is ignored");
    let late = super::tests::state(now);
    late.confirm(now + Duration::from_secs(5));
    assert!(late.check().is_ok(), "a newer confirmation extends it");
}

#[test]
fn a_lost_lease_stays_lost_with_its_first_reason() {
    let state = state(Instant::now() + Duration::from_secs(60));
    state.mark_lost("the journal write was refused".into());
    state.mark_lost("second".into());
    state.confirm(Instant::now() + Duration::from_secs(120));
    assert_eq!(state.check().unwrap_err(), "the journal write was refused");
}
