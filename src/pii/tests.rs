use super::*;

fn all() -> PiiDetector {
    PiiDetector::new(&PiiKind::ALL).unwrap()
}

/// (kind, matched text) pairs for `text`.
fn found(det: &PiiDetector, text: &str) -> Vec<(PiiKind, String)> {
    det.scan(text)
        .matches
        .iter()
        .map(|m| (m.kind, text[m.start..m.end].to_string()))
        .collect()
}

fn assert_single(det: &PiiDetector, text: &str, kind: PiiKind, expected: &str) {
    let got = found(det, text);
    assert_eq!(got, vec![(kind, expected.to_string())], "text: {text:?}");
}

fn assert_none(det: &PiiDetector, text: &str) {
    let got = found(det, text);
    assert!(got.is_empty(), "unexpected matches in {text:?}: {got:?}");
}

#[test]
fn shape_scan_skips_keyword_anchored_detectors_only() {
    let det = all();
    let kinds = |text: &str| -> Vec<PiiKind> {
        det.scan_shapes(text)
            .matches
            .iter()
            .map(|m| m.kind)
            .collect()
    };
    // Keyword-anchored: found in text, not in a label.
    for text in [
        "auth:password:reset-2fa",
        "api_key:abc123xyz987",
        "ssn:078051120",
        "https://bob:hunter2pass@example.com",
    ] {
        assert!(!det.scan(text).is_empty(), "scan finds {text:?}");
        assert!(kinds(text).is_empty(), "{text:?}: {:?}", kinds(text));
    }
    // PII by its shape: found by both.
    for (text, kind) in [
        ("078-05-1120", PiiKind::NationalId),
        ("4111-1111-1111-1111", PiiKind::CardNumber),
        ("415-555-0132", PiiKind::Phone),
        ("AKIAIOSFODNN7EXAMPLE", PiiKind::Secret),
        ("GB82WEST12345698765432", PiiKind::Iban),
        ("jane@example.com", PiiKind::Email),
    ] {
        assert_eq!(kinds(text), vec![kind], "{text:?}");
        assert_eq!(found(&det, text).len(), 1, "{text:?}");
    }
}

#[test]
fn kind_names_round_trip() {
    for k in PiiKind::ALL {
        assert_eq!(PiiKind::parse(k.as_str()), Some(k));
        let json = serde_json::to_string(&k).unwrap();
        assert_eq!(json, format!("\"{}\"", k.as_str()));
        let back: PiiKind = serde_json::from_str(&json).unwrap();
        assert_eq!(back, k);
    }
    assert_eq!(PiiKind::parse("Email"), None);
    assert_eq!(PiiKind::parse("ssn"), None);
    let mut sorted = PiiKind::ALL;
    sorted.sort();
    assert_eq!(sorted, PiiKind::ALL);
}

#[test]
fn detector_is_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<PiiDetector>();
    check::<std::sync::Arc<PiiDetector>>();
}

#[test]
fn email_positive() {
    let d = all();
    assert_single(
        &d,
        "Contact john.doe+tag@example.co.uk today",
        PiiKind::Email,
        "john.doe+tag@example.co.uk",
    );
    assert_single(
        &d,
        "JANE_DOE@Example.COM",
        PiiKind::Email,
        "JANE_DOE@Example.COM",
    );
    assert_single(
        &d,
        "mailto:ops-team@mail.internal-corp.io.",
        PiiKind::Email,
        "ops-team@mail.internal-corp.io",
    );
}

#[test]
fn email_negative() {
    let d = all();
    assert_none(&d, "ping @username on slack");
    assert_none(&d, "foo@bar is not an address");
    assert_none(&d, "user@localhost");
    assert_none(&d, "a@b.c");
    assert_none(&d, "decorators like @property and @dataclass(frozen=True)");
}

#[test]
fn phone_positive() {
    let d = all();
    for (text, want) in [
        ("call +1 (415) 555-0132 now", "+1 (415) 555-0132"),
        ("office: +44 20 7946 0958.", "+44 20 7946 0958"),
        ("cell 415-555-0132", "415-555-0132"),
        ("(415) 555 0132 is the desk", "(415) 555 0132"),
        ("E.164: +14155550132", "+14155550132"),
        ("London 020 7946 0958", "020 7946 0958"),
        ("dots 415.555.0132 work", "415.555.0132"),
        ("toll free 1-800-555-0199", "1-800-555-0199"),
        ("Paris +33 1 23 45 67 89", "+33 1 23 45 67 89"),
    ] {
        assert_single(&d, text, PiiKind::Phone, want);
    }
}

#[test]
fn phone_negative() {
    let d = all();
    for text in [
        "1234567",
        "The year 2023 was better than 1999 and 2001.",
        "What is 3 + 4 = 7? And 12 * 34 = 408.",
        "x = 5 +1234567",
        "Total: 1234567 + 7654321 = 8888888",
        "Dates 2023-10-15, 15.10.2023 and 10/15/2023.",
        "IP 192.168.100.1234 and version 1.2.3",
        "range 415-555-0132-99 is a part number",
        "decimal 3.415-555-0132",
        "mixed 415.555-0132",
        "0000 0000 0000",
        "111-111-1111",
        "The population is 7,900,000,000 and pi is 3.14159265358979",
    ] {
        assert_none(&d, text);
    }
}

#[test]
fn card_positive() {
    let d = all();
    for (text, want) in [
        ("card 4111 1111 1111 1111 exp 12/27", "4111 1111 1111 1111"),
        ("card 4111-1111-1111-1111.", "4111-1111-1111-1111"),
        ("card 4111111111111111", "4111111111111111"),
        ("mc 5500 0000 0000 0004", "5500 0000 0000 0004"),
        ("amex 3782 822463 10005", "3782 822463 10005"),
        ("discover 6011 1111 1111 1117", "6011 1111 1111 1117"),
        ("mc2 2221000000000009", "2221000000000009"),
    ] {
        assert_single(&d, text, PiiKind::CardNumber, want);
    }
}

#[test]
fn card_negative() {
    let d = all();
    for text in [
        // Luhn failures
        "4111 1111 1111 1112",
        "4111111111111112",
        // unknown issuer prefix (even if Luhn passes: 1234567812345670)
        "1234 5678 1234 5670",
        "0000 0000 0000 0000",
        // mixed separators
        "4111 1111-1111 1111",
        // glued to a decimal / word
        "3.4111111111111111",
        "id4111111111111111",
        // thousands grouping, years, timestamps
        "1 234 567 890 123 456",
        "2001 2002 2003 2004",
        "timestamp 1699999999999",
        "A. 1990 B. 2000 C. 2010 D. 2020",
    ] {
        assert_none(&d, text);
    }
}

#[test]
fn iban_positive() {
    let d = all();
    for iban in [
        "DE89 3704 0044 0532 0130 00",
        "DE89370400440532013000",
        "GB82 WEST 1234 5698 7654 32",
        "GB82WEST12345698765432",
        "FR14 2004 1010 0505 0001 3M02 606",
        "ES91 2100 0418 4502 0005 1332",
        "IT60 X054 2811 1010 0000 0123 456",
        "NL91 ABNA 0417 1643 00",
        "CH93 0076 2011 6238 5295 7",
        "BE68 5390 0754 7034",
    ] {
        assert_single(&d, &format!("IBAN: {iban}, thanks"), PiiKind::Iban, iban);
    }
    // A following group that does not belong to the IBAN is not swallowed.
    assert_single(
        &d,
        "BE68 5390 0754 7034 2024",
        PiiKind::Iban,
        "BE68 5390 0754 7034",
    );
}

#[test]
fn iban_negative() {
    let d = all();
    for text in [
        "DE89 3704 0044 0532 0130 01", // checksum
        "DE88 3704 0044 0532 0130 00", // checksum
        "DE89 3704 0044 0532 0130",    // wrong length for DE
        "XX89 3704 0044 0532 0130 00", // unknown country
        "de89 3704 0044 0532 0130 00", // lower case
        "GB82 WEST 1234 5698 7654 33",
    ] {
        let got = found(&d, text);
        assert!(
            got.iter().all(|(k, _)| *k != PiiKind::Iban),
            "{text:?}: {got:?}"
        );
    }
}

#[test]
fn ssn() {
    let d = all();
    assert_single(
        &d,
        "SSN 219-09-9999 on file",
        PiiKind::NationalId,
        "219-09-9999",
    );
    assert_single(&d, "id: 536-22-1234.", PiiKind::NationalId, "536-22-1234");
    for bad in [
        "000-12-3456",
        "666-12-3456",
        "900-12-3456",
        "987-65-4321",
        "123-00-4567",
        "123-45-0000",
        "1-123-45-6789",
        "123-45-6789-0",
    ] {
        assert_none(&d, &format!("number {bad} here"));
    }
}

#[test]
fn uk_nino() {
    let d = all();
    assert_single(
        &d,
        "NI number AB 12 34 56 C.",
        PiiKind::NationalId,
        "AB 12 34 56 C",
    );
    assert_single(&d, "nino=AB123456C", PiiKind::NationalId, "AB123456C");
    for bad in [
        "GB123456A",
        "AB123456E",
        "DA123456A",
        "AO123456A",
        "ab123456c",
    ] {
        assert_none(&d, &format!("value {bad} end"));
    }
}

#[test]
fn keyword_ids() {
    let d = all();
    assert_single(&d, "passport no: X1234567", PiiKind::NationalId, "X1234567");
    assert_single(
        &d,
        "My Passport Number is 123456789.",
        PiiKind::NationalId,
        "123456789",
    );
    assert_single(&d, "passport #C01X00T47", PiiKind::NationalId, "C01X00T47");
    assert_single(&d, "SSN: 219099999", PiiKind::NationalId, "219099999");
    assert_none(&d, "passport renewal takes 6 weeks");
    assert_none(&d, "passport: 2023");
    assert_none(&d, "passport office ABCDEFG");
    assert_none(&d, "SSN: 000123456");
    assert_none(&d, "SSN: 9991234567");
}

#[test]
fn secret_tokens() {
    let d = all();
    let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA1234567890abcdef\nQWERTYuiop+/==\n-----END RSA PRIVATE KEY-----";
    let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
    for tok in [
        "sk-proj-abc123DEF456ghi789JKL012mno345",
        "sk-ant-api03-abcdefghijklmnop1234567890_XYZ",
        "sk-abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKL",
        "AKIAIOSFODNN7EXAMPLE",
        "ASIAY34FZKBOKMUTVV7A",
        "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        "gho_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
        "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
        "AIzaSyA-1234567890abcdefghijklmnopqrstu",
        jwt,
        pem,
    ] {
        let text = format!("use this: {tok} \nok");
        assert_single(&d, &text, PiiKind::Secret, tok);
    }
    // PEM header without END: header plus body, trailing whitespace trimmed.
    let partial = "key:\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\nAAAA==\n\n";
    assert_single(
        &d,
        partial,
        PiiKind::Secret,
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\nAAAA==",
    );
}

#[test]
fn secret_token_negatives() {
    let d = all();
    for text in [
        "task-based learning and risk-free returns",
        "pip install scikit-learn; import sklearn; sk-learn",
        "sk-this-is-not-a-real-key-at-all-really",
        "Asia is the largest continent; AKIA is a prefix",
        "ghp_short",
        "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END PUBLIC KEY-----",
        "eyJhbGciOiJIUzI1NiJ9 alone",
    ] {
        assert_none(&d, text);
    }
}

#[test]
fn secret_assignments() {
    let d = all();
    for (text, want) in [
        ("password=hunter2", "hunter2"),
        ("PASSWORD: Tr0ub4dor&3", "Tr0ub4dor&3"),
        ("DB_PASSWORD=s3cr3t!pass", "s3cr3t!pass"),
        (r#"api_key: "abcd1234efgh""#, "abcd1234efgh"),
        (r#"{"client_secret": "s3cr3t-value"}"#, "s3cr3t-value"),
        ("secret_key = 'zX9!kLm2#pQ'", "zX9!kLm2#pQ"),
        ("my password is hunter22.", "hunter22"),
        (
            "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCY",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCY",
        ),
        (
            "Authorization: Bearer abcdef1234567890abcdef",
            "abcdef1234567890abcdef",
        ),
        ("export GITHUB_TOKEN=abc123def456", "abc123def456"),
        ("refresh_token: 3f9a8b7c6d5e4f3a", "3f9a8b7c6d5e4f3a"),
        ("pin password: 4821", "4821"),
    ] {
        assert_single(&d, text, PiiKind::Secret, want);
    }
    // URL credentials: the password is a secret, the host is not an e-mail.
    assert_single(
        &d,
        "DATABASE_URL postgres://admin:S3cretPass@db.example.com:5432/app",
        PiiKind::Secret,
        "S3cretPass",
    );
}

#[test]
fn secret_assignment_negatives() {
    let d = all();
    for text in [
        "password = self.password",
        r#"password=os.environ["DB_PASSWORD"]"#,
        "password = get_password()",
        "api_key: <YOUR_API_KEY>",
        r#"api_key = "YOUR_API_KEY""#,
        r#"api_key = "API_KEY""#,
        "api_key=${API_KEY}",
        "password: ********",
        "The password is incorrect.",
        "Please reset your password.",
        "password: at least 8 characters",
        "secret = 42",
        "max_tokens=4096",
        "max_token=4096",
        "api_key=1234567890",
        "next token: the",
        "token: deadbeef",
        "Bearer token authentication",
        "token: None",
        "https://user:password@example.com",
    ] {
        let got = found(&d, text);
        assert!(
            got.iter().all(|(k, _)| *k != PiiKind::Secret),
            "{text:?}: {got:?}"
        );
    }
}

#[test]
fn benign_prompts_do_not_fire() {
    let d = all();
    for text in [
        "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?",
        "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. How much did she earn?",
        "A store sells 1200 apples at $0.45 each and 3,450 oranges at $1.25 each. What is the total revenue in 2023 dollars?",
        "Which year did the Berlin Wall fall?\nA. 1987\nB. 1989\nC. 1991\nD. 1993\nAnswer:",
        "A. 1990 B. 2000 C. 2010 D. 2020",
        "Compute 123456789 * 987654321 and 1000000 + 2000000 = 3000000.",
        "The iPhone 15 costs $799, the 15 Pro costs $999 and the Pro Max $1,199.",
        "Between 1939 and 1945, roughly 70-85 million people died (about 3% of the 1940 world population of 2.3 billion).",
        "Solve for x: 3x + 5 = 20, then compute 2^10 = 1024 and 17 mod 5 = 2.",
        "ISBN 978-0-306-40615-7, DOI 10.1000/182, order #A-1029-3384.",
        "Coordinates 40.7128, -74.0060; elevation 10 m; zip 10001.",
        "fn main() { let x: u64 = 18446744073709551615; println!(\"{x}\"); }",
        "Set the secret santa budget to 25 and the passport photo size to 35x45 mm.",
    ] {
        assert_none(&d, text);
    }
}

#[test]
fn counts_and_redaction() {
    let d = all();
    let text = "Email me at jane@example.com or call +1 (415) 555-0132.";
    let scan = d.scan(text);
    assert_eq!(
        scan.counts(),
        vec![(PiiKind::Email, 1), (PiiKind::Phone, 1)]
    );
    assert_eq!(scan.redact(text), "Email me at [EMAIL] or call [PHONE].");

    let text = "a@example.com, b@example.org; password=hunter2; card 4111 1111 1111 1111; IBAN DE89370400440532013000; SSN 219-09-9999; key AKIAIOSFODNN7EXAMPLE";
    let scan = d.scan(text);
    assert_eq!(
        scan.counts(),
        vec![
            (PiiKind::Email, 2),
            (PiiKind::CardNumber, 1),
            (PiiKind::Iban, 1),
            (PiiKind::NationalId, 1),
            (PiiKind::Secret, 2),
        ]
    );
    assert_eq!(
        scan.redact(text),
        "[EMAIL], [EMAIL]; password=[SECRET]; card [CARD_NUMBER]; IBAN [IBAN]; SSN [NATIONAL_ID]; key [SECRET]"
    );

    let empty = d.scan("nothing to see here");
    assert!(empty.is_empty());
    assert!(empty.counts().is_empty());
    assert_eq!(empty.redact("nothing to see here"), "nothing to see here");
}

#[test]
fn redact_ignores_invalid_matches() {
    let text = "héllo wörld";
    let scan = PiiScan {
        matches: vec![
            PiiMatch {
                kind: PiiKind::Email,
                start: 2,
                end: 4,
            }, // inside 'é'
            PiiMatch {
                kind: PiiKind::Phone,
                start: 7,
                end: 13,
            },
            PiiMatch {
                kind: PiiKind::Secret,
                start: 8,
                end: 9,
            }, // overlaps
            PiiMatch {
                kind: PiiKind::Iban,
                start: 10,
                end: 99,
            }, // out of bounds
        ],
    };
    assert_eq!(scan.redact(text), "héllo [PHONE]");
}

#[test]
fn only_enabled_kinds() {
    let text = "jane@example.com +44 20 7946 0958 password=hunter2";
    let d = PiiDetector::new(&[PiiKind::Email]).unwrap();
    assert_eq!(d.scan(text).counts(), vec![(PiiKind::Email, 1)]);
    let d = PiiDetector::new(&[PiiKind::Phone, PiiKind::Secret]).unwrap();
    assert_eq!(
        d.scan(text).counts(),
        vec![(PiiKind::Phone, 1), (PiiKind::Secret, 1)]
    );
    let d = PiiDetector::new(&[]).unwrap();
    assert!(d.scan(text).is_empty());
}

#[test]
fn overlaps_keep_longer_then_earlier() {
    let m = |kind, start, end| PiiMatch { kind, start, end };
    let got = resolve_overlaps(vec![
        m(PiiKind::Phone, 0, 10),
        m(PiiKind::Iban, 5, 20),
        m(PiiKind::Secret, 15, 18),
        m(PiiKind::Email, 20, 25),
        m(PiiKind::Phone, 30, 35),
        m(PiiKind::CardNumber, 33, 38),
    ]);
    assert_eq!(
        got,
        vec![
            m(PiiKind::Iban, 5, 20),
            m(PiiKind::Email, 20, 25),
            m(PiiKind::Phone, 30, 35),
        ]
    );

    // Real text: the trunk-style phone inside the IBAN loses to the IBAN.
    let d = all();
    let text = "IBAN DE89 3704 0044 0532 0130 00";
    assert_single(&d, text, PiiKind::Iban, "DE89 3704 0044 0532 0130 00");
    let phones_only = PiiDetector::new(&[PiiKind::Phone]).unwrap();
    assert!(!phones_only.scan(text).is_empty());

    // Bearer JWT: token and bearer value cover the same bytes -> one match.
    let text = "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
    assert_eq!(d.scan(text).counts(), vec![(PiiKind::Secret, 1)]);
}

#[test]
fn multibyte_text_around_matches() {
    let d = all();
    let text = "Привет, jane@example.com — 電話 +44 20 7946 0958 🎉 café 4111 1111 1111 1111 ü password=pässwörd1 日本";
    let scan = d.scan(text);
    let got: Vec<_> = scan
        .matches
        .iter()
        .map(|m| (m.kind, &text[m.start..m.end]))
        .collect();
    assert_eq!(
        got,
        vec![
            (PiiKind::Email, "jane@example.com"),
            (PiiKind::Phone, "+44 20 7946 0958"),
            (PiiKind::CardNumber, "4111 1111 1111 1111"),
            (PiiKind::Secret, "pässwörd1"),
        ]
    );
    assert_eq!(
        scan.redact(text),
        "Привет, [EMAIL] — 電話 [PHONE] 🎉 café [CARD_NUMBER] ü password=[SECRET] 日本"
    );
    // Non-ASCII directly adjacent to matches.
    for text in [
        "é4111111111111111é",
        "日jane@example.com日",
        "ü+44 20 7946 0958ü",
    ] {
        let scan = d.scan(text);
        assert_eq!(scan.matches.len(), 1, "{text:?}");
        for m in &scan.matches {
            assert!(text.is_char_boundary(m.start) && text.is_char_boundary(m.end));
        }
    }
}

#[test]
fn large_input() {
    let d = all();
    let mut text = "The quick brown fox jumps over the lazy dog in 2024. ".repeat(5000);
    text.push_str("contact: jane@example.com");
    assert!(text.len() > 256 * 1024);
    assert_eq!(d.scan(&text).counts(), vec![(PiiKind::Email, 1)]);
    // Unterminated PEM at the start of a large text stays linear.
    let text = format!(
        "-----BEGIN PRIVATE KEY-----\nMIIE\n{}",
        "abc def ".repeat(40_000)
    );
    assert_eq!(d.scan(&text).counts(), vec![(PiiKind::Secret, 1)]);
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn random_strings_never_panic_and_matches_are_well_formed() {
    const PIECES: &[&str] = &[
        "0",
        "1",
        "4",
        "7",
        "9",
        "41",
        "555",
        "0132",
        "4111",
        "1111",
        " ",
        " ",
        "-",
        ".",
        "+",
        "(",
        ")",
        "@",
        ":",
        "=",
        "\"",
        "'",
        "/",
        "\n",
        "a",
        "Z",
        "x",
        "é",
        "€",
        "日本",
        "🎉",
        "ß",
        "sk-",
        "AKIA",
        "ghp_",
        "eyJ",
        "xoxb-",
        "AIza",
        "DE89",
        "GB82",
        "WEST",
        "AB",
        "password=",
        "api_key: ",
        "passport no: ",
        "SSN ",
        "-----BEGIN RSA PRIVATE KEY-----",
        "-----END RSA PRIVATE KEY-----",
        "@example.com",
        "jane",
        "://",
        "Bearer ",
        "+44 20 7946 0958",
        "4111 1111 1111 1111",
        "219-09-9999",
        "AB 12 34 56 C",
        "DE89 3704 0044 0532 0130 00",
        "hunter2",
        "abcdefghij0123456789",
    ];
    let d = all();
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut total_matches = 0usize;
    for _ in 0..4000 {
        let n = rng.below(40);
        let mut text = String::new();
        for _ in 0..n {
            text.push_str(PIECES[rng.below(PIECES.len())]);
        }
        let scan = d.scan(&text);
        let mut last_end = 0;
        for m in &scan.matches {
            assert!(m.start < m.end, "{text:?}: {m:?}");
            assert!(m.end <= text.len(), "{text:?}: {m:?}");
            assert!(m.start >= last_end, "unsorted/overlapping in {text:?}");
            assert!(text.is_char_boundary(m.start) && text.is_char_boundary(m.end));
            last_end = m.end;
        }
        total_matches += scan.matches.len();
        let redacted = scan.redact(&text);
        assert!(redacted.len() <= text.len() + 16 * scan.matches.len());
        let counted: u32 = scan.counts().iter().map(|(_, c)| c).sum();
        assert_eq!(counted as usize, scan.matches.len());
    }
    assert!(total_matches > 100, "generator should exercise detectors");
}

/// Rough timing: `cargo test --release --lib pii::tests::timing -- --ignored --nocapture`.
#[test]
#[ignore]
fn timing() {
    use std::time::Instant;
    let d = all();
    let prose = "The committee reviewed the proposal in detail and agreed that the new design improves readability, reduces maintenance effort and makes onboarding easier for everyone involved. ".repeat(12);
    let prose = &prose[..2048];
    let math = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. If each clip costs $1.25 and she had 1200 clips in 2023, how many remain after 350 + 275 = 625 are sold? ".repeat(12);
    let math = &math[..2048];
    let code = "def compute(items):\n    total = 0\n    for i, item in enumerate(items):\n        total += item.price * 1.07  # tax 7%\n    return total  # see ticket 48213\n".repeat(14);
    let code = &code[..2048];
    let pii = format!(
        "{} jane@example.com +44 20 7946 0958 4111 1111 1111 1111 password=hunter2 {}",
        &prose[..900],
        &prose[..900]
    );
    let big = prose.repeat(128);
    for (name, text, iters) in [
        ("2KB prose", prose, 20_000),
        ("2KB math", math, 20_000),
        ("2KB code", code, 20_000),
        ("2KB with PII", pii.as_str(), 20_000),
        ("256KB prose", big.as_str(), 200),
    ] {
        let start = Instant::now();
        let mut n = 0;
        for _ in 0..iters {
            n += std::hint::black_box(d.scan(std::hint::black_box(text)))
                .matches
                .len();
        }
        let per = start.elapsed() / iters;
        eprintln!(
            "{name:>14}: {per:?} per scan ({} bytes, {n} matches)",
            text.len()
        );
    }
}
