//! The lease rules, scenario by scenario with an explicit clock, and as properties over
//! generated sequences of requests, claims and clock steps.

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;

use super::*;

const T0: u64 = 1_700_000_000_000;

fn request(action: LeaseAction, holder: &str, token: u64, ttl_seconds: u64) -> LeaseRequest {
    LeaseRequest {
        holder: holder.to_owned(),
        token,
        ttl_seconds,
        action,
    }
}

fn acquire(
    book: &mut LeaseBook,
    holder: &str,
    token: u64,
    ttl: u64,
    now: u64,
) -> Result<LeaseChange, LeaseError> {
    let (next, change) = book.decide(&request(LeaseAction::Acquire, holder, token, ttl), now)?;
    *book = next;
    Ok(change)
}

fn claim(holder: &str, token: u64) -> LeaseClaim {
    LeaseClaim {
        holder: holder.to_owned(),
        token,
    }
}

#[test]
fn acquire_renew_and_expire() {
    let mut book = LeaseBook::default();
    assert_eq!(
        acquire(&mut book, "r-1", 1, 60, T0).unwrap(),
        LeaseChange::Acquired { previous: None }
    );
    let view = book.view(T0 + 1_000).unwrap();
    assert_eq!(
        (view.holder.as_str(), view.token, view.remaining_ms),
        ("r-1", 1, 59_000)
    );
    // Another holder is refused while it is live, naming the holder and the time left.
    let error = acquire(&mut book, "r-2", 1, 60, T0 + 10_000).unwrap_err();
    assert_eq!(error.kind(), "lease_held");
    assert!(error.to_string().contains("`r-1`"), "{error}");
    assert!(error.to_string().contains("50000 ms"), "{error}");
    assert!(error.to_string().contains("topoctl lease break"), "{error}");
    // A renewal pushes the expiry.
    assert_eq!(
        acquire(&mut book, "r-1", 1, 60, T0 + 50_000).unwrap(),
        LeaseChange::Renewed { previous_token: 1 }
    );
    assert!(acquire(&mut book, "r-2", 1, 60, T0 + 100_000).is_err());
    // Expired at exactly its expiry: anyone may take it.
    assert!(book.live(T0 + 110_000).is_none());
    let expired = book.lease.clone();
    assert_eq!(
        expired.as_ref().map(|lease| lease.holder.as_str()),
        Some("r-1")
    );
    assert_eq!(
        acquire(&mut book, "r-2", 1, 60, T0 + 110_000).unwrap(),
        LeaseChange::Acquired { previous: expired }
    );
    assert_eq!(book.view(T0 + 110_000).unwrap().holder, "r-2");
}

#[test]
fn a_higher_token_fences_the_old_leader() {
    let mut book = LeaseBook::default();
    acquire(&mut book, "ctl", 4, 30, T0).unwrap();
    assert_eq!(
        acquire(&mut book, "ctl", 5, 30, T0 + 1).unwrap(),
        LeaseChange::Renewed { previous_token: 4 }
    );
    // The old leader's renewal and its applies are refused as stale.
    let error = acquire(&mut book, "ctl", 4, 30, T0 + 2).unwrap_err();
    assert_eq!(error.kind(), "stale_token");
    assert!(error.to_string().contains("seen token 5"), "{error}");
    assert_eq!(
        book.check(Some(&claim("ctl", 4)), T0 + 2)
            .unwrap_err()
            .kind(),
        "stale_token"
    );
    book.check(Some(&claim("ctl", 5)), T0 + 2).unwrap();
    // The fence outlives the lease: after expiry token 4 is still stale, 5 is fine.
    let later = T0 + 60_000;
    assert_eq!(
        acquire(&mut book, "ctl", 4, 30, later).unwrap_err().kind(),
        "stale_token"
    );
    acquire(&mut book, "ctl", 5, 30, later).unwrap();
}

#[test]
fn claims_of_mutations() {
    let mut book = LeaseBook::default();
    // No lease: a mutation without claim acts; one with a claim must acquire first.
    book.check(None, T0).unwrap();
    assert_eq!(
        book.check(Some(&claim("r-1", 1)), T0).unwrap_err().kind(),
        "lease_not_held"
    );
    acquire(&mut book, "r-1", 2, 10, T0).unwrap();
    book.check(Some(&claim("r-1", 2)), T0 + 1).unwrap();
    assert_eq!(book.check(None, T0 + 1).unwrap_err().kind(), "lease_held");
    assert_eq!(
        book.check(Some(&claim("r-2", 9)), T0 + 1)
            .unwrap_err()
            .kind(),
        "lease_held"
    );
    assert_eq!(
        book.check(Some(&claim("r-1", 1)), T0 + 1)
            .unwrap_err()
            .kind(),
        "stale_token"
    );
    assert_eq!(
        book.check(Some(&claim("r-1", 3)), T0 + 1)
            .unwrap_err()
            .kind(),
        "lease_not_held"
    );
    // Expired: the holder's claim is refused (it must re-acquire), no claim acts again.
    assert_eq!(
        book.check(Some(&claim("r-1", 2)), T0 + 10_000)
            .unwrap_err()
            .kind(),
        "lease_not_held"
    );
    book.check(None, T0 + 10_000).unwrap();
}

#[test]
fn release_and_break() {
    let mut book = LeaseBook::default();
    acquire(&mut book, "r-1", 2, 10, T0).unwrap();
    for (holder, token) in [("r-1", 1), ("r-1", 3), ("r-2", 2)] {
        let error = book
            .decide(&request(LeaseAction::Release, holder, token, 0), T0)
            .unwrap_err();
        assert_eq!(error.kind(), "lease_not_held", "{holder} {token}");
        assert!(
            error.to_string().contains("held by `r-1` token 2"),
            "{error}"
        );
    }
    let (released, change) = book
        .decide(&request(LeaseAction::Release, "r-1", 2, 0), T0 + 1)
        .unwrap();
    assert_eq!(change, LeaseChange::Released);
    assert_eq!(released.lease, None);
    assert_eq!(released.fence("r-1"), Some(2));
    // Break clears whatever is held, whoever asks; with nothing held it says so.
    let (broken, change) = book
        .decide(&request(LeaseAction::Break, "operator", 0, 0), T0 + 1)
        .unwrap();
    assert_eq!(broken.lease, None);
    let LeaseChange::Broken {
        broken: Some(lease),
    } = &change
    else {
        panic!("{change:?}");
    };
    assert_eq!(lease.holder, "r-1");
    assert!(
        change
            .describe(&request(LeaseAction::Break, "operator", 0, 0))
            .contains("lease of `r-1` token 2 broken by `operator`")
    );
    let (_, change) = broken
        .decide(&request(LeaseAction::Break, "operator", 0, 0), T0 + 1)
        .unwrap();
    assert_eq!(change, LeaseChange::Broken { broken: None });
}

#[test]
fn bad_requests_are_invalid() {
    let book = LeaseBook::default();
    for (holder, ttl) in [("r", 0), ("r", 3601), ("", 60), ("a\nb", 60)] {
        let error = book
            .decide(&request(LeaseAction::Acquire, holder, 1, ttl), T0)
            .unwrap_err();
        assert_eq!(error.kind(), "invalid", "{holder:?} {ttl}: {error}");
    }
    book.decide(&request(LeaseAction::Acquire, "r", 1, 3600), T0)
        .unwrap();
    book.decide(&request(LeaseAction::Acquire, "r", 1, 1), T0)
        .unwrap();
}

#[test]
fn fences_are_bounded_and_keep_the_recent_holders() {
    let mut book = LeaseBook::default();
    for index in 0..(FENCE_CAPACITY as u64 + 10) {
        let holder = format!("r-{index}");
        acquire(&mut book, &holder, 7, 1, T0 + index * 2_000).unwrap();
    }
    assert_eq!(book.fences.len(), FENCE_CAPACITY);
    assert_eq!(book.fence("r-0"), None);
    assert_eq!(book.fence(&format!("r-{}", FENCE_CAPACITY + 9)), Some(7));
}

#[test]
fn persistence_round_trip() {
    let mut book = LeaseBook::default();
    acquire(&mut book, "r-1", 3, 60, T0).unwrap();
    acquire(&mut book, "r-1", 4, 60, T0 + 5).unwrap();
    let text = serde_json::to_string_pretty(&book).unwrap();
    let read: LeaseBook = serde_json::from_str(&text).unwrap();
    assert_eq!(read, book);
    // After a restart the expiry is the same wall-clock instant.
    assert_eq!(read.view(T0 + 30_005).unwrap().remaining_ms, 30_000);
    assert!(
        serde_json::from_str::<LeaseBook>(r#"{"lease":null,"fences":{},"sequence":0,"x":1}"#)
            .is_err()
    );
}

/// One step of a generated history.
#[derive(Debug, Clone)]
enum Step {
    Request(LeaseRequest),
    Check(Option<LeaseClaim>),
    Wait(u64),
}

fn step() -> impl Strategy<Value = Step> {
    let holder = prop_oneof![Just("a"), Just("b"), Just("c")].prop_map(str::to_owned);
    let action = prop_oneof![
        4 => Just(LeaseAction::Acquire),
        2 => Just(LeaseAction::Release),
        1 => Just(LeaseAction::Break),
    ];
    prop_oneof![
        3 => (holder.clone(), 0u64..5, 0u64..6, action).prop_map(|(holder, token, ttl_seconds, action)| {
            Step::Request(LeaseRequest { holder, token, ttl_seconds, action })
        }),
        2 => proptest::option::of((holder, 0u64..5))
            .prop_map(|claim| Step::Check(claim.map(|(holder, token)| LeaseClaim { holder, token }))),
        2 => (0u64..4_000).prop_map(Step::Wait),
    ]
}

/// The rules written out naively, for comparison: (holder, token, expiry) and fences.
#[derive(Default)]
struct Model {
    lease: Option<(String, u64, u64)>,
    fences: BTreeMap<String, u64>,
}

impl Model {
    fn live(&self, now: u64) -> Option<&(String, u64, u64)> {
        self.lease.as_ref().filter(|(_, _, expiry)| now < *expiry)
    }

    fn request(&mut self, request: &LeaseRequest, now: u64) -> &'static str {
        let LeaseRequest {
            holder,
            token,
            ttl_seconds,
            action,
        } = request;
        match action {
            LeaseAction::Break => {
                self.lease = None;
                "ok"
            }
            LeaseAction::Release => match &self.lease {
                Some((held, held_token, _)) if held == holder && held_token == token => {
                    self.lease = None;
                    "ok"
                }
                _ => "lease_not_held",
            },
            LeaseAction::Acquire => {
                if !(1..=3600).contains(ttl_seconds) {
                    return "invalid";
                }
                if self.fences.get(holder).is_some_and(|fence| token < fence) {
                    return "stale_token";
                }
                if self.live(now).is_some_and(|(held, _, _)| held != holder) {
                    return "lease_held";
                }
                self.lease = Some((holder.clone(), *token, now + ttl_seconds * 1000));
                let fence = self.fences.entry(holder.clone()).or_insert(*token);
                *fence = (*fence).max(*token);
                "ok"
            }
        }
    }

    fn check(&self, claim: Option<&LeaseClaim>, now: u64) -> &'static str {
        match (self.live(now), claim) {
            (None, None) => "ok",
            (None, Some(_)) => "lease_not_held",
            (Some((held, held_token, _)), Some(claim)) if *held == claim.holder => {
                match claim.token.cmp(held_token) {
                    std::cmp::Ordering::Less => "stale_token",
                    std::cmp::Ordering::Greater => "lease_not_held",
                    std::cmp::Ordering::Equal => "ok",
                }
            }
            (Some(_), _) => "lease_held",
        }
    }
}

proptest! {
    /// The book agrees with the naive rules on every request and claim; fences never go down;
    /// a claim acts only when it is exactly the live lease's; the book survives a round trip
    /// through its persisted form at every step.
    #[test]
    fn the_book_follows_the_rules(steps in proptest::collection::vec(step(), 1..60)) {
        let mut book = LeaseBook::default();
        let mut model = Model::default();
        let mut now = T0;
        for step in steps {
            let fences_before = book.fences.clone();
            match &step {
                Step::Wait(milliseconds) => now += milliseconds,
                Step::Request(request) => {
                    let expected = model.request(request, now);
                    match book.decide(request, now) {
                        Ok((next, _)) => {
                            prop_assert_eq!(expected, "ok", "{:?}", step);
                            book = next;
                        }
                        Err(error) => prop_assert_eq!(expected, error.kind(), "{:?}", step),
                    }
                }
                Step::Check(claim) => {
                    let expected = model.check(claim.as_ref(), now);
                    let actual = book.check(claim.as_ref(), now).err().map_or("ok", |error| error.kind());
                    prop_assert_eq!(expected, actual, "{:?}", step);
                    if actual == "ok" {
                        let live = book.live(now).map(|lease| (lease.holder.clone(), lease.token));
                        prop_assert_eq!(live, claim.as_ref().map(|claim| (claim.holder.clone(), claim.token)));
                    }
                }
            }
            for (holder, fence) in &fences_before {
                prop_assert!(book.fence(holder).unwrap() >= fence.token);
            }
            let read: LeaseBook = serde_json::from_str(&serde_json::to_string(&book).unwrap()).unwrap();
            prop_assert_eq!(&read, &book);
        }
    }
}
