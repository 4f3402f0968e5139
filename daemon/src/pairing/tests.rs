use super::*;

fn t(s: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + s)
}

fn src(s: &str) -> Source {
    Source::of(s.parse().unwrap())
}

/// A canonical code that is not `code`.
fn wrong(code: &str) -> &'static str {
    if code.starts_with('2') {
        "33333333"
    } else {
        "22222222"
    }
}

#[test]
fn codes_use_the_alphabet_and_format() {
    let code = generate_code(&rng()).unwrap();
    assert_eq!(code.len(), 8);
    assert!(code.bytes().all(|b| ALPHABET.contains(&b)));
    let shown = format_code(&code);
    assert_eq!(shown.len(), 9);
    assert_eq!(&shown[4..5], "-");
    assert_eq!(
        normalize_code(&shown.to_lowercase()).unwrap().as_str(),
        code.as_str()
    );
}

#[test]
fn normalization_rejects_bad_input() {
    for bad in [
        "",
        "ABCD-EFG",
        "ABCD-EFGHJ",
        "ABCD-EF0H",
        "ABCD-EFIH",
        "ABCD_EFGH",
        "ÄBCD-EFGH",
        &"A".repeat(40),
    ] {
        assert!(normalize_code(bad).is_none(), "{bad:?}");
    }
    assert_eq!(normalize_code("abcd efgh").unwrap().as_str(), "ABCDEFGH");
}

#[test]
fn single_use_expiring_and_replaced() {
    let s = src("198.51.100.7");
    let mut p = Pairing::default();
    assert_eq!(
        p.check(s, "ABCDEFGH", t(0)).unwrap_err().0,
        CodeError::NoPending
    );
    let (first, exp) = p.mint(&rng(), t(0)).unwrap();
    assert_eq!(exp, t(300));
    let (second, _) = p.mint(&rng(), t(1)).unwrap();
    if first.as_str() != second.as_str() {
        assert_eq!(p.check(s, &first, t(2)).unwrap_err().0, CodeError::Wrong);
    }
    assert_eq!(p.check(s, &second, t(2)), Ok(()));
    p.consume(s);
    assert_eq!(
        p.check(s, &second, t(3)).unwrap_err().0,
        CodeError::NoPending
    );
    let (third, _) = p.mint(&rng(), t(10)).unwrap();
    assert_eq!(
        p.check(s, &third, t(310)).unwrap_err().0,
        CodeError::NoPending
    );
}

#[test]
fn sources_are_addresses_or_ipv6_slash_64() {
    assert_eq!(src("203.0.113.1"), src("::ffff:203.0.113.1"));
    assert_eq!(src("2001:db8:1:2::1"), src("2001:db8:1:2:ffff::9"));
    assert_ne!(src("2001:db8:1:2::1"), src("2001:db8:1:3::1"));
    assert_eq!(src("2001:db8:1:2::1").to_string(), "2001:db8:1:2::/64");
    assert_eq!(src("203.0.113.1").to_string(), "203.0.113.1");
}

#[test]
fn rate_limit_per_source() {
    let ip = src("198.51.100.7");
    let other = src("198.51.100.8");
    let mut p = Pairing::default();
    for i in 0..5 {
        p.admit(ip, t(i)).unwrap();
    }
    let Err(Refusal::Throttled { retry_after }) = p.admit(ip, t(5)) else {
        panic!("expected a throttle");
    };
    assert!((55..=61).contains(&retry_after), "{retry_after}");
    p.admit(other, t(5)).unwrap();
    p.admit(ip, t(61)).unwrap();
}

#[test]
fn a_source_is_locked_out_after_its_failures_and_only_that_source() {
    let ip = src("203.0.113.1");
    let mut p = Pairing::default();
    let (code, _) = p.mint(&rng(), t(0)).unwrap();
    for i in 0..LOCKOUT_FAILURES as u64 {
        p.admit(ip, t(i * 20)).unwrap();
        let (err, effect) = p.check(ip, wrong(&code), t(i * 20)).unwrap_err();
        assert_eq!(err, CodeError::Wrong);
        assert_eq!(effect.locked_out, i + 1 == LOCKOUT_FAILURES as u64);
    }
    let Err(Refusal::LockedOut { retry_after }) = p.admit(ip, t(100)) else {
        panic!("expected a lockout");
    };
    assert!(retry_after > 800, "{retry_after}");
    let status = p.status(t(100));
    assert_eq!(
        status.locked_out,
        [LockedOut {
            source: ip,
            until: t(80) + LOCKOUT_DURATION
        }]
    );
    // The code is still pending and another source pairs with it.
    let device = src("198.51.100.20");
    p.admit(device, t(101)).unwrap();
    assert_eq!(p.check(device, &code, t(101)), Ok(()));
    // The lockout ends.
    assert!(p.admit(ip, t(80) + LOCKOUT_DURATION).is_ok());
}

#[test]
fn many_sources_spend_the_budget_but_a_clean_source_still_pairs() {
    let mut p = Pairing::default();
    let (code, expires) = p.mint(&rng(), t(0)).unwrap();
    let budget = CODE_GUESS_BUDGET as usize;
    let sources: Vec<Source> = (0..budget)
        .map(|i| src(&format!("2001:db8:{}:{}::1", i / 256, i % 256)))
        .collect();
    for (i, s) in sources.iter().enumerate() {
        p.admit(*s, t(1)).unwrap();
        let (err, effect) = p.check(*s, wrong(&code), t(1)).unwrap_err();
        assert_eq!(err, CodeError::Wrong);
        assert_eq!(effect.budget_spent, i + 1 == budget, "{i}");
    }
    assert!(p.status(t(2)).budget_spent);
    // A source with a failure may not guess again; the code is not void.
    assert_eq!(
        p.admit(sources[0], t(90)),
        Err(Refusal::BudgetSpent {
            retry_after: secs_until(t(90), expires)
        })
    );
    // A clean source gets one try: a wrong one puts it out too …
    let stranger = src("203.0.113.50");
    p.admit(stranger, t(90)).unwrap();
    assert_eq!(
        p.check(stranger, wrong(&code), t(90)).unwrap_err().0,
        CodeError::Wrong
    );
    assert!(matches!(
        p.admit(stranger, t(91)),
        Err(Refusal::BudgetSpent { .. })
    ));
    // … and two attempts admitted together from a clean source guess only once.
    let racer = src("203.0.113.51");
    p.admit(racer, t(92)).unwrap();
    p.admit(racer, t(92)).unwrap();
    assert_eq!(
        p.check(racer, wrong(&code), t(92)).unwrap_err().0,
        CodeError::Wrong
    );
    assert!(matches!(
        p.check(racer, &code, t(92)).unwrap_err().0,
        CodeError::Refused(Refusal::BudgetSpent { .. })
    ));
    // The real device, from a clean address, pairs.
    let device = src("198.51.100.20");
    p.admit(device, t(120)).unwrap();
    assert_eq!(p.check(device, &code, t(120)), Ok(()));
}

/// `source` tries `code` the way a client does (admitted, then checked); true when it was a
/// wrong guess (refusals are not).
fn guess(p: &mut Pairing, source: Source, code: &str, now: SystemTime) -> bool {
    p.admit(source, now).is_ok() && matches!(p.check(source, code, now), Err((CodeError::Wrong, _)))
}

/// The `i`th /64 of the stranger's one /48.
fn stranger_slash_64(i: usize) -> Source {
    src(&format!("2001:db8:bad:{i:x}::1"))
}

#[test]
fn sources_are_grouped_into_networks_of_an_ipv4_address_or_an_ipv6_slash_48() {
    let net = |s: &str| Network::of(src(s));
    assert_eq!(net("2001:db8:1:2::1"), net("2001:db8:1:ffff::9"));
    assert_ne!(net("2001:db8:1:2::1"), net("2001:db8:2:2::1"));
    assert_eq!(net("2001:db8:1:2::1").to_string(), "2001:db8:1::/48");
    // IPv4 is never grouped: behind carrier-grade NAT a /24 holds strangers.
    assert_ne!(net("203.0.113.1"), net("203.0.113.2"));
    assert_eq!(net("::ffff:203.0.113.1"), net("203.0.113.1"));
    assert_eq!(net("203.0.113.1").to_string(), "203.0.113.1");
}

#[test]
fn strangers_in_one_slash_48_cannot_deny_pairing_to_a_real_device() {
    let mut p = Pairing::default();
    let (code, _) = p.mint(&rng(), t(0)).unwrap();
    // A few IPv4 addresses, then more /64s of one /48 than the table holds, each guessing.
    let v4: Vec<Source> = (1..=5).map(|i| src(&format!("203.0.113.{i}"))).collect();
    let mut wrong_guesses = 0;
    for s in &v4 {
        wrong_guesses += usize::from(guess(&mut p, *s, wrong(&code), t(1)));
    }
    for i in 0..MAX_TRACKED + CODE_GUESS_BUDGET as usize + 100 {
        wrong_guesses += usize::from(guess(&mut p, stranger_slash_64(i), wrong(&code), t(2)));
        assert!(p.sources.len() <= MAX_TRACKED);
        assert!(p.failed_networks.len() <= MAX_TRACKED);
    }
    assert!(p.status(t(3)).budget_spent);
    // Real devices from other networks pair with the pending code.
    for device in ["198.51.100.20", "2001:db8:beef:1::20"].map(src) {
        assert_eq!(p.admit(device, t(10)), Ok(()), "{device}");
        assert_eq!(p.check(device, &code, t(10)), Ok(()), "{device}");
    }
    // The strangers spent the budget and got no guess after it; those that failed are refused.
    assert_eq!(wrong_guesses, CODE_GUESS_BUDGET as usize);
    for s in v4
        .into_iter()
        .chain([stranger_slash_64(0), stranger_slash_64(9999)])
    {
        assert!(
            matches!(p.admit(s, t(11)), Err(Refusal::BudgetSpent { .. })),
            "{s}"
        );
    }
}

#[test]
fn failures_kept_across_codes_do_not_let_one_slash_48_deny_a_re_minted_code() {
    // The operator mints code after code; each time the stranger's /48 spends the budget from
    // fresh /64s, until the source table is full of its sources with failures on record.
    let mut p = Pairing::default();
    let budget = CODE_GUESS_BUDGET as usize;
    let mut next = 0;
    let mut code = Zeroizing::new(String::new());
    let mut wrong_guesses = Vec::new();
    for round in 0..MAX_TRACKED.div_ceil(budget) as u64 {
        let now = t(round * 20);
        code = p.mint(&rng(), now).unwrap().0;
        for _ in 0..budget + 100 {
            guess(&mut p, stranger_slash_64(next), wrong(&code), now);
            next += 1;
        }
        let status = p.status(now);
        assert!(status.budget_spent);
        wrong_guesses.push(status.wrong_guesses);
    }
    assert_eq!(p.sources.len(), MAX_TRACKED);
    assert!(p.sources.values().all(|r| !r.failures.is_empty()));
    // The real device takes the place of a source refused by its network anyway; the
    // stranger's sources are still refused.
    let now = t(100);
    let device = src("2001:db8:beef:1::20");
    assert_eq!(p.admit(device, now), Ok(()));
    assert_eq!(p.check(device, &code, now), Ok(()));
    assert_eq!(p.sources.len(), MAX_TRACKED);
    for s in [stranger_slash_64(0), stranger_slash_64(next - 1)] {
        assert!(
            matches!(p.admit(s, now), Err(Refusal::BudgetSpent { .. })),
            "{s}"
        );
    }
    // No code drew a guess from the /48 beyond its budget.
    assert!(
        wrong_guesses.iter().all(|w| *w == CODE_GUESS_BUDGET),
        "{wrong_guesses:?}"
    );
}

#[test]
fn after_the_budget_one_slash_48_gets_one_guess_however_many_slash_64s_it_uses() {
    let mut p = Pairing::default();
    let (code, expires) = p.mint(&rng(), t(0)).unwrap();
    let failed = src("10.0.0.0");
    for i in 0..CODE_GUESS_BUDGET as usize {
        let v4 = src(&format!("10.0.{}.{}", i / 256, i % 256));
        assert!(guess(&mut p, v4, wrong(&code), t(1)));
    }
    // A source with a failure is refused.
    assert_eq!(
        p.admit(failed, t(2)),
        Err(Refusal::BudgetSpent {
            retry_after: secs_until(t(2), expires)
        })
    );
    // A fresh /48: its first /64 guesses, then no /64 of it does, admitted or not.
    let mut wrong_guesses = 0;
    for i in 0..MAX_TRACKED * 3 {
        let s = stranger_slash_64(i);
        wrong_guesses += usize::from(guess(&mut p, s, wrong(&code), t(3)));
        assert!(matches!(
            p.check(s, wrong(&code), t(3)).unwrap_err().0,
            CodeError::Refused(Refusal::BudgetSpent { .. })
        ));
    }
    assert_eq!(wrong_guesses, 1);
    assert_eq!(p.status(t(3)).wrong_guesses, CODE_GUESS_BUDGET + 1);
    // Refusals by network need no source record.
    assert!(p.sources.len() <= CODE_GUESS_BUDGET as usize + 1);
    // Two /64s of one clean /48 admitted together guess once: the first failure puts the
    // network out, in the same step, even for the right code.
    let (a, b) = (src("2001:db8:cafe:1::1"), src("2001:db8:cafe:2::1"));
    p.admit(a, t(4)).unwrap();
    p.admit(b, t(4)).unwrap();
    assert_eq!(
        p.check(a, wrong(&code), t(4)).unwrap_err().0,
        CodeError::Wrong
    );
    assert!(matches!(
        p.check(b, &code, t(4)).unwrap_err().0,
        CodeError::Refused(Refusal::BudgetSpent { .. })
    ));
    // A device that pairs (with a new code) is forgiven its network's failures too.
    let (code, _) = p.mint(&rng(), t(5)).unwrap();
    let device = src("2001:db8:cafe:3::1");
    assert_eq!(p.check(device, &code, t(5)), Ok(()));
    p.consume(device);
    assert!(!p.failed_networks.contains_key(&Network::of(a)));
}

#[test]
fn the_tables_are_bounded_and_networks_that_guessed_at_a_spent_code_are_never_evicted() {
    let mut p = Pairing::default();
    let (code, _) = p.mint(&rng(), t(0)).unwrap();
    // A distinct /48 for each source: what it takes now to fill the tables.
    let v6 = |i: usize| src(&format!("2001:db8:{i:x}::1"));
    let mut wrong_guesses = 0;
    let mut i = 0;
    // Far more networks than the tables hold, each guessing until refused.
    while i < MAX_TRACKED * 2 + CODE_GUESS_BUDGET as usize {
        wrong_guesses += usize::from(guess(&mut p, v6(i), wrong(&code), t(1)));
        i += 1;
        assert!(p.sources.len() <= MAX_TRACKED);
        assert!(p.failed_networks.len() <= MAX_TRACKED);
    }
    assert!(
        wrong_guesses <= CODE_GUESS_BUDGET as usize + MAX_TRACKED,
        "{wrong_guesses}"
    );
    // Every network in the table guessed at the spent code: a new one is told to wait, and a
    // new /64 of one that guessed is refused by its network.
    assert!(matches!(p.admit(v6(i), t(2)), Err(Refusal::Busy { .. })));
    assert!(matches!(
        p.check(v6(i), &code, t(2)).unwrap_err().0,
        CodeError::Refused(Refusal::Busy { .. })
    ));
    assert!(matches!(
        p.admit(src("2001:db8:0:1::1"), t(2)),
        Err(Refusal::BudgetSpent { .. })
    ));
    // A new code starts a new budget, and the tables make room again.
    p.mint(&rng(), t(400)).unwrap();
    assert!(p.admit(v6(i), t(400)).is_ok());
}

#[test]
fn constant_time_eq_works() {
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(!constant_time_eq(b"abc", b"abd"));
    assert!(!constant_time_eq(b"abc", b"ab"));
}
