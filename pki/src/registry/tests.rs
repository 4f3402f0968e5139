use super::*;

fn t(s: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(s)
}

fn serial(s: &str) -> Serial {
    s.parse().unwrap()
}

#[test]
fn accepted_agents_are_active_or_in_grace_agents_only() {
    let mut r = Registry::default();
    for (s, kind) in [
        ("01", CertificateKind::Agent),
        ("02", CertificateKind::Server),
        ("03", CertificateKind::Agent),
        ("04", CertificateKind::Agent),
    ] {
        r.record(serial(s), kind, "x".into(), t(100), t(10_000));
    }
    r.revoke(&serial("01"), t(150));
    // 03 superseded by 04 with a grace period ending at 300.
    r.supersede_others(
        CertificateKind::Agent,
        &serial("04"),
        t(200),
        Duration::from_secs(100),
    );
    let accepted = |at| {
        r.accepted_agents(t(at))
            .map(|e| e.serial.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(accepted(250), ["03", "04"]);
    assert_eq!(accepted(300), ["04"]);
}

#[test]
fn lifecycle() {
    let mut r = Registry::default();
    r.record(
        serial("01"),
        CertificateKind::Agent,
        "a".into(),
        t(100),
        t(1000),
    );
    r.record(
        serial("02"),
        CertificateKind::Server,
        "s".into(),
        t(100),
        t(1000),
    );
    assert_eq!(r.admit_agent(&serial("01"), t(200)), Admission::Active);
    assert_eq!(
        r.admit_agent(&serial("02"), t(200)),
        Admission::Refused(RefusalReason::WrongKind)
    );
    assert_eq!(
        r.admit_agent(&serial("03"), t(200)),
        Admission::Refused(RefusalReason::Unknown)
    );

    r.record(
        serial("03"),
        CertificateKind::Agent,
        "a".into(),
        t(300),
        t(1300),
    );
    assert_eq!(
        r.supersede_others(
            CertificateKind::Agent,
            &serial("03"),
            t(300),
            Duration::from_secs(60)
        ),
        vec![serial("01")]
    );
    assert_eq!(r.admit_agent(&serial("01"), t(359)), Admission::Grace);
    assert_eq!(
        r.admit_agent(&serial("01"), t(360)),
        Admission::Refused(RefusalReason::Superseded)
    );
    assert_eq!(r.admit_agent(&serial("03"), t(360)), Admission::Active);

    assert!(r.revoke(&serial("03"), t(400)));
    assert!(!r.revoke(&serial("09"), t(400)));
    assert_eq!(
        r.admit_agent(&serial("03"), t(401)),
        Admission::Refused(RefusalReason::Revoked)
    );
}

const GRACE: Duration = Duration::from_secs(60);
const LIFETIME: u64 = 30 * 86_400;

fn cert(n: u64, at: u64) -> crate::IssuedCertificate {
    crate::IssuedCertificate {
        der: rustls_pki_types::CertificateDer::from(Vec::new()),
        pem: String::new(),
        serial: serial(&format!("{n:08x}")),
        not_before: t(at),
        not_after: t(at + LIFETIME),
    }
}

/// `r.renew` of `presented` at `at`, issuing certificate `n` then.
fn renew(
    r: &mut Registry,
    presented: &str,
    n: u64,
    at: u64,
) -> Result<(RenewalGrant, Vec<Serial>), RenewalRefusal> {
    r.renew(&serial(presented), &cert(n, at), "a".into(), t(at), GRACE)
}

/// One agent certificate, 01, active since 100.
fn one_agent() -> Registry {
    let mut r = Registry::default();
    r.record(
        serial("ca"),
        CertificateKind::Ca,
        "ca".into(),
        t(0),
        t(1 << 40),
    );
    r.replace(
        &cert(1, 100),
        CertificateKind::Agent,
        "a".into(),
        t(100),
        GRACE,
    );
    r
}

#[test]
fn only_the_newest_active_serial_renews() {
    let mut r = one_agent();
    assert_eq!(
        r.renewal_decision(&serial("00000001"), t(200)),
        Ok(RenewalGrant::Current)
    );
    assert_eq!(
        r.renewal_decision(&serial("ca"), t(200)),
        Err(RenewalRefusal::WrongKind)
    );
    assert_eq!(
        r.renewal_decision(&serial("99"), t(200)),
        Err(RenewalRefusal::Unknown)
    );
    // A second active agent serial (recorded without superseding): only it renews.
    r.record(
        serial("00000002"),
        CertificateKind::Agent,
        "a".into(),
        t(300),
        t(9999),
    );
    assert_eq!(
        r.renewal_decision(&serial("00000001"), t(300)),
        Err(RenewalRefusal::NotNewest {
            newer: serial("00000002")
        })
    );
    assert!(r.revoke(&serial("00000002"), t(301)));
    assert_eq!(
        r.renewal_decision(&serial("00000002"), t(302)),
        Err(RenewalRefusal::Revoked)
    );
}

#[test]
fn a_superseded_serial_whose_successor_was_used_cannot_renew() {
    // `netclaw pki rotate` at 200: 01 -> 02; the agent uses 02 at 201.
    let mut r = one_agent();
    renew(&mut r, "00000001", 2, 200).unwrap();
    assert!(r.mark_first_use(&serial("00000002"), t(201)));
    assert!(
        !r.mark_first_use(&serial("00000002"), t(202)),
        "first use only"
    );
    let before = r.clone();
    // The stolen old key, inside the grace period: refused, and the registry unchanged.
    let refusal = renew(&mut r, "00000001", 3, 210).unwrap_err();
    assert_eq!(
        refusal,
        RenewalRefusal::SuccessorInUse {
            successor: serial("00000002")
        }
    );
    assert!(refusal.suggests_clone());
    assert_eq!(r, before);
    // Past the grace period.
    assert_eq!(
        r.renewal_decision(&serial("00000001"), t(260)),
        Err(RenewalRefusal::PastGrace)
    );
    // The agent's own serial renews.
    assert_eq!(
        r.renewal_decision(&serial("00000002"), t(210)),
        Ok(RenewalGrant::Current)
    );
}

#[test]
fn a_lost_answer_renews_once() {
    // A renewal at 200 issued 02, but the answer was lost: the agent still holds 01, and
    // 02 never completes a handshake.
    let mut r = one_agent();
    renew(&mut r, "00000001", 2, 200).unwrap();
    let (grant, superseded) = renew(&mut r, "00000001", 3, 210).unwrap();
    assert_eq!(
        grant,
        RenewalGrant::LostAnswer {
            successor: serial("00000002")
        }
    );
    assert_eq!(superseded, vec![serial("00000002")]);
    assert_eq!(
        r.get(&serial("00000001")).unwrap().lost_answer_renewal,
        Some(210)
    );
    // Once: a second attempt is refused (and looks like a copied key).
    let before = r.clone();
    let refusal = renew(&mut r, "00000001", 4, 220).unwrap_err();
    assert_eq!(refusal, RenewalRefusal::LostAnswerUsed);
    assert!(refusal.suggests_clone());
    assert_eq!(r, before);
    // Once 03 is used, neither 01 nor 02 (superseded by 03 before it was ever used) renews.
    r.mark_first_use(&serial("00000003"), t(221));
    assert_eq!(
        r.renewal_decision(&serial("00000002"), t(222)),
        Err(RenewalRefusal::SuccessorInUse {
            successor: serial("00000003")
        })
    );

    // A superseded serial whose successor was itself replaced (an offline rotation) before
    // anyone used it: not the lost-answer case.
    let mut r = one_agent();
    renew(&mut r, "00000001", 2, 200).unwrap();
    r.replace(
        &cert(3, 205),
        CertificateKind::Agent,
        "a".into(),
        t(205),
        GRACE,
    );
    assert_eq!(
        r.renewal_decision(&serial("00000001"), t(210)),
        Err(RenewalRefusal::SuccessorReplaced {
            successor: serial("00000002")
        })
    );
}

#[test]
fn a_serial_superseded_by_a_replacement_cannot_renew() {
    // `netclaw pki rotate --offline` (or `netclaw daemon install --force`) at 200 replaces 01
    // with 02, which the agent has not used yet. 01 never asked for a renewal, so there is no
    // answer to lose: whoever still holds 01's key (a copy) may not renew with it, not even
    // once inside the grace period.
    for replaced_by in ["offline rotation", "re-install"] {
        let mut r = one_agent();
        r.replace(
            &cert(2, 200),
            CertificateKind::Agent,
            replaced_by.into(),
            t(200),
            GRACE,
        );
        assert_eq!(r.get(&serial("00000002")).unwrap().renewed_from, None);
        assert_eq!(r.admit_agent(&serial("00000001"), t(210)), Admission::Grace);
        let before = r.clone();
        let refusal = renew(&mut r, "00000001", 3, 210).unwrap_err();
        assert_eq!(
            refusal,
            RenewalRefusal::SupersededByReplacement {
                successor: serial("00000002")
            },
            "{replaced_by}"
        );
        assert_eq!(refusal.as_str(), "superseded-by-replacement");
        assert_eq!(r, before, "nothing issued, nothing marked");
        assert_eq!(
            r.get(&serial("00000001")).unwrap().lost_answer_renewal,
            None
        );
        // The agent's new serial renews as usual.
        assert_eq!(
            r.renewal_decision(&serial("00000002"), t(210)),
            Ok(RenewalGrant::Current)
        );
    }

    // Likewise when the replaced serial was itself issued by a renewal: what counts is how
    // its successor was issued.
    let mut r = one_agent();
    renew(&mut r, "00000001", 2, 200).unwrap();
    r.mark_first_use(&serial("00000002"), t(201));
    r.replace(
        &cert(3, 300),
        CertificateKind::Agent,
        "a".into(),
        t(300),
        GRACE,
    );
    assert_eq!(
        r.renewal_decision(&serial("00000002"), t(310)),
        Err(RenewalRefusal::SupersededByReplacement {
            successor: serial("00000003")
        })
    );
}

#[test]
fn only_the_serial_whose_renewal_issued_the_successor_claims_a_lost_answer() {
    let mut r = one_agent();
    renew(&mut r, "00000001", 2, 200).unwrap();
    assert_eq!(
        r.get(&serial("00000002")).unwrap().renewed_from,
        Some(serial("00000001"))
    );
    // The lost-answer renewal issues 03, renewed from 01 too; 02 (never delivered, superseded
    // by 03) did not ask for 03 and may not claim a lost answer.
    let (grant, _) = renew(&mut r, "00000001", 3, 210).unwrap();
    assert!(matches!(grant, RenewalGrant::LostAnswer { .. }));
    assert_eq!(
        r.get(&serial("00000003")).unwrap().renewed_from,
        Some(serial("00000001"))
    );
    assert_eq!(
        r.renewal_decision(&serial("00000002"), t(215)),
        Err(RenewalRefusal::SupersededByReplacement {
            successor: serial("00000003")
        })
    );
}

#[test]
fn a_registry_written_before_renewed_from_was_recorded_still_loads_and_fails_closed() {
    // 01 superseded by 02 (unused) in a file written before `renewedFrom` existed: 02's origin
    // is unknown, so 01 gets no lost-answer renewal.
    let json = r#"{"version":1,"entries":[{"serial":"01","kind":"agent","subject":"a","issuedAt":100,"notAfter":9999,"status":{"state":"superseded","at":200,"grace_until":260,"successor":"02"}},{"serial":"02","kind":"agent","subject":"a","issuedAt":200,"notAfter":9999,"status":{"state":"active"}}]}"#;
    let r: Registry = serde_json::from_str(json).unwrap();
    assert_eq!(r.entries[1].renewed_from, None);
    assert_eq!(serde_json::to_string(&r).unwrap(), json);
    assert_eq!(
        r.renewal_decision(&serial("01"), t(210)),
        Err(RenewalRefusal::SupersededByReplacement {
            successor: serial("02")
        })
    );
    // A renewal writes the field, and it round-trips.
    let mut r = one_agent();
    renew(&mut r, "00000001", 2, 200).unwrap();
    let json = serde_json::to_string(&r).unwrap();
    let renewed_from = format!(r#""renewedFrom":"{}""#, serial("00000001"));
    assert!(json.contains(&renewed_from), "{json}");
    let back: Registry = serde_json::from_str(&json).unwrap();
    assert_eq!(
        back.entries.last().unwrap().renewed_from.as_ref(),
        Some(&back.entries[1].serial)
    );
}

#[test]
fn the_registry_stays_bounded_over_many_rotations() {
    // 500 daily rotations with 30-day certificates, the agent using each new serial.
    let mut r = one_agent();
    let mut current = serial("00000001");
    for n in 2..502u64 {
        let at = 100 + (n - 1) * 86_400;
        r.renew(&current, &cert(n, at), "a".into(), t(at), GRACE)
            .unwrap();
        current = cert(n, at).serial;
        r.mark_first_use(&current, t(at + 1));
    }
    // The CA, the active serial, and the superseded ones not yet expired (30 days).
    assert!(r.entries.len() <= 33, "{} entries", r.entries.len());
    let size = serde_json::to_vec(&r).unwrap().len();
    assert!(size < 16 * 1024, "{size} bytes");

    // 500 rotations a minute apart: expiry prunes nothing, the cap bounds the file.
    let mut r = one_agent();
    let mut current = serial("00000001");
    for n in 2..502u64 {
        let at = 100 + (n - 1) * 60;
        r.renew(&current, &cert(n, at), "a".into(), t(at), GRACE)
            .unwrap();
        current = cert(n, at).serial;
        r.mark_first_use(&current, t(at + 1));
    }
    assert_eq!(r.entries.len(), 2 + MAX_RETIRED);
    let last = 100 + 500 * 60;
    // What remains still decides: the last superseded serial is in grace for connections
    // but may not renew (its successor is in use); an older kept one is refused as
    // superseded; a pruned one as unknown. Nothing pruned is admitted.
    let previous = serial(&format!("{:08x}", 500));
    assert_eq!(r.admit_agent(&previous, t(last + 5)), Admission::Grace);
    assert_eq!(
        r.renewal_decision(&previous, t(last + 5)),
        Err(RenewalRefusal::SuccessorInUse {
            successor: current.clone()
        })
    );
    let kept = serial(&format!("{:08x}", 500 - MAX_RETIRED as u64 + 2));
    assert_eq!(
        r.admit_agent(&kept, t(last + 5)),
        Admission::Refused(RefusalReason::Superseded)
    );
    assert_eq!(
        r.admit_agent(&serial("00000002"), t(last + 5)),
        Admission::Refused(RefusalReason::Unknown)
    );
    assert_eq!(r.admit_agent(&current, t(last + 5)), Admission::Active);
    assert_eq!(
        r.renewal_decision(&current, t(last + 5)),
        Ok(RenewalGrant::Current)
    );
}

#[test]
fn pruning_keeps_active_and_in_grace_entries() {
    let mut r = one_agent();
    renew(&mut r, "00000001", 2, 200).unwrap();
    // Long after every certificate expired: the superseded one goes, the active ones stay.
    assert_eq!(r.prune(t(200 + 2 * LIFETIME), GRACE), 1);
    assert!(r.get(&serial("00000001")).is_none());
    assert!(r.get(&serial("00000002")).is_some());
    assert!(r.get(&serial("ca")).is_some());
}

#[test]
fn a_registry_written_before_first_use_was_recorded_still_loads() {
    let json = r#"{"version":1,"entries":[{"serial":"0a","kind":"agent","subject":"a","issuedAt":1,"notAfter":2,"status":{"state":"active"}}]}"#;
    let r: Registry = serde_json::from_str(json).unwrap();
    assert_eq!(r.entries[0].first_used, None);
    // And entries without the new fields are written as before.
    assert_eq!(serde_json::to_string(&r).unwrap(), json);
}

#[test]
fn json_round_trip_and_unknown_fields_rejected() {
    let mut r = Registry::default();
    r.record(serial("0a"), CertificateKind::Agent, "a".into(), t(1), t(2));
    let json = serde_json::to_string(&r).unwrap();
    assert_eq!(serde_json::from_str::<Registry>(&json).unwrap(), r);
    let bad = json.replacen("\"version\"", "\"extra\":1,\"version\"", 1);
    assert!(serde_json::from_str::<Registry>(&bad).is_err());
}
