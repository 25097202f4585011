use super::*;

fn clf() -> TextClassifier {
    TextClassifier::new().unwrap()
}

fn assert_task(c: &TextClassifier, text: &str, want: TaskType) {
    let got = c.task(text);
    assert_eq!(
        got.task, want,
        "text: {text:?}\nscores (code, math, extraction, classification, summarization, chat, qa): {:?}",
        got.scores
    );
    let max = got.scores.iter().copied().fold(f32::MIN, f32::max);
    assert_eq!(got.score(got.task), max);
}

fn assert_domains(c: &TextClassifier, text: &str, want: &[RiskDomain]) {
    assert_eq!(c.risk_domains(text), want, "text: {text:?}");
}

#[test]
fn names_round_trip() {
    for t in TaskType::ALL {
        assert_eq!(TaskType::parse(t.as_str()), Some(t));
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, format!("\"{}\"", t.as_str()));
        assert_eq!(serde_json::from_str::<TaskType>(&json).unwrap(), t);
    }
    for d in RiskDomain::ALL {
        assert_eq!(RiskDomain::parse(d.as_str()), Some(d));
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{}\"", d.as_str()));
        assert_eq!(serde_json::from_str::<RiskDomain>(&json).unwrap(), d);
    }
    assert_eq!(TaskType::parse("Code"), None);
    assert_eq!(RiskDomain::parse("health"), None);
    let mut sorted = TaskType::ALL;
    sorted.sort();
    assert_eq!(sorted, TaskType::ALL);
    let mut sorted = RiskDomain::ALL;
    sorted.sort();
    assert_eq!(sorted, RiskDomain::ALL);
}

#[test]
fn classifier_is_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<TextClassifier>();
}

#[test]
fn cue_table_is_well_formed() {
    for &(raw, _, w) in CUES {
        let lit = raw.trim_start_matches('!').trim_end_matches('*');
        assert!(!lit.is_empty(), "{raw:?}");
        assert!(w > 0.0 && w <= 5.0, "{raw:?}");
        if !raw.starts_with('!') {
            assert_eq!(
                lit,
                lit.to_lowercase(),
                "cue literals are lower case: {raw:?}"
            );
        }
    }
}

#[test]
fn code_prompts() {
    let c = clf();
    for text in [
        "Write a python function that returns the n-th Fibonacci number.",
        "Why does this fail?\n```rust\nfn main() {\n    let v = vec![1, 2, 3];\n    println!(\"{}\", v[3]);\n}\n```",
        "Traceback (most recent call last):\n  File \"app.py\", line 3, in <module>\nKeyError: 'user'",
        "SELECT name, COUNT(*) FROM orders WHERE total > 100 GROUP BY name; is slow, how can I speed it up?",
        "#include <stdio.h>\nint main() { printf(\"hi\"); return 0; }\nWhy does gcc warn here?",
        "Fix the bug in utils.js: the regex /^\\d+$/ does not match negative numbers.",
        "Refactor this class to use dependency injection:\nclass UserService {\n  constructor() { this.db = new Db(); }\n}",
    ] {
        assert_task(&c, text, TaskType::Code);
    }
}

#[test]
fn math_prompts() {
    let c = clf();
    for text in [
        // GSM8K-style word problems
        "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?",
        "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. How much did she earn?",
        "Betty is saving money for a new wallet which costs $100. Betty has only half of the money she needs. Her parents decided to give her $15 for that purpose, and her grandparents twice as much as her parents. How much more money does Betty need to buy the wallet?",
        "James writes a 3-page letter to 2 different friends twice a week. How many pages does he write a year?",
        // symbolic / numeric
        "Solve for x: 3x + 5 = 20",
        "Calculate the integral of x^2 from 0 to 3.",
        "What is the probability of rolling two sixes with two fair dice?",
        "12 * 7 + 3 = ?",
        "Compute 15% of 240.",
        "What is 15 + 27?",
        "A train travels 60 miles per hour for 3 hours. How far does it go?",
        "If a shirt costs $20 and is discounted 25%, what is the sale price?",
    ] {
        assert_task(&c, text, TaskType::Math);
    }
}

#[test]
fn extraction_prompts() {
    let c = clf();
    for text in [
        "Extract all person names and dates from the following text: On 3 May, Alice met Bob in Paris.",
        "Pull out the invoice number, total and due date from this email and return them as JSON.",
        "List all the company names mentioned in the article below.\n\nAcme Corp announced a partnership with Globex.",
        "Parse this address into JSON with fields street, city and zip: 1600 Amphitheatre Pkwy, Mountain View, CA 94043",
    ] {
        assert_task(&c, text, TaskType::Extraction);
    }
}

#[test]
fn classification_prompts() {
    let c = clf();
    for text in [
        "Classify the sentiment of this review as positive or negative: The battery died after two days.",
        "Is this spam? 'Congratulations, you won a free cruise, click here!'",
        "Categorize the following support ticket into one of: billing, technical, account. Ticket: I can't log in.",
        "Label each tweet with its sentiment (positive, negative, neutral).",
    ] {
        assert_task(&c, text, TaskType::Classification);
    }
}

#[test]
fn summarization_prompts() {
    let c = clf();
    let article = "The city council met on Tuesday to discuss the new transit plan. Members debated funding, routes and timelines for several hours. ".repeat(10);
    for text in [
        format!("Summarize the following article in three sentences:\n\n{article}"),
        format!("{article}\n\nTL;DR?"),
        format!("Give me the key points of this meeting transcript:\n{article}"),
        "Please summarise this paragraph: The quick brown fox jumps over the lazy dog.".to_string(),
        format!("Condense this into a short paragraph: {article}"),
    ] {
        assert_task(&c, &text, TaskType::Summarization);
    }
}

#[test]
fn chat_prompts() {
    let c = clf();
    for text in [
        "hi",
        "Hello! How are you today?",
        "Thanks, that was really helpful :)",
        "Let's role-play: you are a pirate captain and I am a new recruit.",
        "Tell me a joke",
        "I feel a bit lonely tonight.",
        "Write a short poem about autumn leaves.",
    ] {
        assert_task(&c, text, TaskType::Chat);
    }
}

#[test]
fn qa_prompts() {
    let c = clf();
    for text in [
        "What is the capital of Australia?",
        "Who wrote Pride and Prejudice?",
        "Why is the sky blue?",
        "When did the Berlin Wall fall?",
        "Explain the difference between mitosis and meiosis.",
        "How does a refrigerator work?",
        "Describe the water cycle.",
    ] {
        assert_task(&c, text, TaskType::Qa);
    }
}

#[test]
fn mmlu_multiple_choice() {
    let c = clf();
    for text in [
        "Which of the following is the body cavity that contains the pituitary gland?\nA. Abdominal\nB. Cranial\nC. Pleural\nD. Spinal\nAnswer:",
        "In which year did the Berlin Wall fall? A. 1987 B. 1989 C. 1991 D. 1993 Answer:",
        "The longest river in Africa is:\n(A) Congo\n(B) Niger\n(C) Nile\n(D) Zambezi",
        "Question: Which philosopher wrote 'Critique of Pure Reason'?\nA) Hume\nB) Kant\nC) Locke\nD) Hegel\nAnswer:",
        "The following are multiple choice questions (with answers) about world history.\n\nWho was the first emperor of Rome?\nA. Julius Caesar\nB. Augustus\nC. Nero\nD. Trajan\nAnswer:",
    ] {
        assert_task(&c, text, TaskType::Qa);
    }
    // Years and thousands separators are not "math".
    assert_task(&c, "What is the best way to invest $10,000?", TaskType::Qa);
    // clearly math / code multiple choice keeps its task
    assert_task(
        &c,
        "The following are multiple choice questions (with answers) about high school mathematics.\n\nWhat is the value of 2^5?\nA. 10\nB. 25\nC. 32\nD. 64\nAnswer:",
        TaskType::Math,
    );
    assert_task(
        &c,
        "Solve for x: 3x + 5 = 20.\nA. 3\nB. 5\nC. 7\nD. 15\nAnswer:",
        TaskType::Math,
    );
    assert_task(
        &c,
        "What does this Python code print?\n```python\nprint(len([1, 2, 3]))\n```\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer:",
        TaskType::Code,
    );
}

#[test]
fn structure_signals() {
    let s = Structure::scan(b"A. 1990 B. 2000 C. 2010 D. 2020");
    assert_eq!(s.choice_options, 4);
    assert_eq!(s.numbers, 4);
    assert_eq!(s.operator_score, 0.0);
    let s = Structure::scan(b"(a) red (b) blue (c) green");
    assert_eq!(s.choice_options, 3);
    let s = Structure::scan(b"Plan A. Then we go. Mr. E. Smith");
    assert!(s.choice_options <= 2);
    let s = Structure::scan(b"It costs $10,000.50 or 1.25 each; 3 + 4 = 7 and x^2");
    assert_eq!(s.numbers, 6);
    assert_eq!(s.operator_score, 3.0);
    let s = Structure::scan(b"int x = 1;\nif (x) {\n  y();\n}\n");
    assert_eq!(s.code_lines, 4);
    let s = Structure::scan(b"  hello   world?  \n");
    assert_eq!(s.words, 2);
    assert!(s.ends_with_question);
    assert_eq!(s.question_marks, 1);
    let s = Structure::scan(b"a;\n\n  \nb {  \r\n}");
    assert_eq!(s.code_lines, 3);
    assert!(!s.ends_with_question);
}

#[test]
fn analyze_matches_separate_calls() {
    let c = clf();
    for text in [
        "",
        "hi",
        "My employer withheld my salary, should I hire an attorney and sue?",
        "Solve for x: 3x + 5 = 20",
        "Summarize the symptoms and the diagnosis of the patient.",
    ] {
        let (task, domains) = c.analyze(text);
        assert_eq!(task, c.task(text));
        assert_eq!(domains, c.risk_domains(text));
    }
}

#[test]
fn empty_and_whitespace() {
    let c = clf();
    for text in ["", " ", "\n\t  \r\n"] {
        let s = c.task(text);
        assert_eq!(s.task, TaskType::Chat);
        assert!(c.risk_domains(text).is_empty());
    }
}

#[test]
fn no_cues_defaults() {
    let c = clf();
    // short statement: chat
    assert_task(&c, "ok", TaskType::Chat);
    assert_task(&c, "I went to the park yesterday.", TaskType::Chat);
    // bare question: qa
    assert_task(&c, "Is it going to rain tomorrow in Oslo?", TaskType::Qa);
    // long text without cues stays chat
    let long = "The garden was quiet in the early morning and the birds sang. ".repeat(50);
    assert_task(&c, &long, TaskType::Chat);
}

#[test]
fn tie_breaks_by_priority() {
    let mut scores = [0.0f32; 7];
    assert_eq!(pick_task(&scores), TaskType::Code);
    scores[TaskType::Chat.index()] = 1.0;
    assert_eq!(pick_task(&scores), TaskType::Chat);
    scores[TaskType::Qa.index()] = 1.0;
    assert_eq!(pick_task(&scores), TaskType::Qa);
    scores[TaskType::Summarization.index()] = 1.0;
    assert_eq!(pick_task(&scores), TaskType::Summarization);
    scores[TaskType::Math.index()] = 1.0;
    scores[TaskType::Code.index()] = 1.0;
    assert_eq!(pick_task(&scores), TaskType::Code);
    scores[TaskType::Extraction.index()] = 1.5;
    assert_eq!(pick_task(&scores), TaskType::Extraction);
    // end to end: equal scores resolve to the higher-priority task
    let c = clf();
    let s = c.task("summarize and classify");
    assert_eq!(
        s.score(TaskType::Classification),
        s.score(TaskType::Summarization),
        "{:?}",
        s.scores
    );
    assert_eq!(s.task, TaskType::Classification, "{:?}", s.scores);
}

#[test]
fn word_boundaries_and_flags() {
    let c = clf();
    // "hi" inside words is not a greeting
    let s = c.task("this is nothing special at all, just a plain statement here");
    assert_eq!(s.score(TaskType::Chat), CHAT_PRIOR, "{:?}", s.scores);
    // case-sensitive SQL keywords: English "select from" is not SQL
    let s = c.task("please select from the menu");
    assert_eq!(s.score(TaskType::Code), 0.0, "{:?}", s.scores);
    // prefix cue
    assert_task(&c, "summarization", TaskType::Summarization);
}

#[test]
fn long_text() {
    let c = clf();
    let body = "The committee reviewed the proposal in detail and agreed that the new design improves readability. ".repeat(3000);
    let text = format!("Summarize the following report:\n{body}");
    assert!(text.len() > 256 * 1024);
    assert_task(&c, &text, TaskType::Summarization);
    assert!(c.risk_domains(&text).is_empty());
    let text = format!("{body}\nWhat is the main decision of the committee?");
    assert_task(&c, &text, TaskType::Qa);
}

#[test]
fn medical_domain() {
    let c = clf();
    for text in [
        "What dosage of ibuprofen is safe for a child?",
        "My symptoms are a fever and chest pain, what could the diagnosis be?",
        "Can I take this medication while pregnant?",
        "Write discharge notes for a patient after knee surgery.",
        "What are the side effects of metformin?",
    ] {
        assert_domains(&c, text, &[RiskDomain::Medical]);
    }
}

#[test]
fn legal_domain() {
    let c = clf();
    for text in [
        "Can my landlord evict me without notice?",
        "Draft a reply to the lawsuit my former business partner filed.",
        "Who gets custody of the children after a divorce?",
        "Is the liability clause in this contract enforceable in court?",
        "How do I apply for a work permit and green card?",
    ] {
        assert_domains(&c, text, &[RiskDomain::Legal]);
    }
}

#[test]
fn financial_domain() {
    let c = clf();
    for text in [
        "Should I invest my savings in index funds or pay off my mortgage?",
        "How do I improve my credit score before applying for a loan?",
        "Explain how capital gains tax works for stocks.",
        "Is it smart to withdraw from my 401(k) before retirement?",
        "What happens to my debts if I declare bankruptcy?",
    ] {
        assert_domains(&c, text, &[RiskDomain::Financial]);
    }
}

#[test]
fn employment_domain() {
    let c = clf();
    for text in [
        "Help me with salary negotiation for my new job offer.",
        "Rank these candidates for the senior engineer role based on their resumes.",
        "How should I fire an employee who keeps missing deadlines?",
        "Write a performance review for my direct report.",
        "We are planning layoffs next quarter; draft the announcement.",
    ] {
        assert_domains(&c, text, &[RiskDomain::Employment]);
    }
}

#[test]
fn multiple_domains_sorted() {
    let c = clf();
    assert_domains(
        &c,
        "My employer withheld my salary, should I hire an attorney and sue? Also, will the settlement be taxable?",
        &[
            RiskDomain::Legal,
            RiskDomain::Financial,
            RiskDomain::Employment,
        ],
    );
    assert_domains(
        &c,
        "I need to terminate an employee for misconduct, what are the legal risks?",
        &[RiskDomain::Legal, RiskDomain::Employment],
    );
}

#[test]
fn domain_negatives() {
    let c = clf();
    for text in [
        "The court was packed for the basketball final.",
        "Please be patient while the page loads.",
        "Resume the download after the network comes back.",
        "I will fire up the grill for dinner.",
        "Fix the syntax error in this taxonomy script.",
        "Investigate why the build is slow.",
        "Sue and I went hiking in the mountains.",
        "The contract bridge club meets on Fridays.",
        "Write a haiku about spring rain.",
        "What is the capital of France?",
        "Write an email to my landlord asking to fix the heating.",
    ] {
        assert_domains(&c, text, &[]);
    }
}

/// Rough timing: `cargo test --release --lib classify::tests::timing -- --ignored --nocapture`.
#[test]
#[ignore]
fn timing() {
    use std::time::Instant;
    let c = clf();
    let prose = "The committee reviewed the proposal in detail and agreed that the new design improves readability, reduces maintenance effort and makes onboarding easier for everyone involved. ".repeat(12);
    let math = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. If each clip costs $1.25 and she had 1200 clips in 2023, how many remain after 350 + 275 = 625 are sold? ".repeat(12);
    let code = "def compute(items):\n    total = 0\n    for i, item in enumerate(items):\n        total += item.price * 1.07  # tax 7%\n    return total  # see ticket 48213\n".repeat(14);
    let big = prose.repeat(128);
    for (name, text, iters) in [
        ("2KB prose", &prose[..2048], 20_000u32),
        ("2KB math", &math[..2048], 20_000),
        ("2KB code", &code[..2048], 20_000),
        ("256KB prose", &big[..], 100),
    ] {
        let start = Instant::now();
        for _ in 0..iters {
            std::hint::black_box(c.task(std::hint::black_box(text)));
        }
        let task = start.elapsed() / iters;
        let start = Instant::now();
        for _ in 0..iters {
            std::hint::black_box(c.risk_domains(std::hint::black_box(text)));
        }
        let domains = start.elapsed() / iters;
        eprintln!(
            "{name:>12}: task() {task:?}, risk_domains() {domains:?} ({} bytes)",
            text.len()
        );
    }
}
