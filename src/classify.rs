//! Task-type and high-stakes-domain detection from prompt text.
//!
//! [`TextClassifier`] is a weighted cue scorer. All keyword cues (for tasks and
//! risk domains) live in one ASCII case-insensitive Aho-Corasick automaton that
//! is run once over the text (overlapping matches); a single extra byte pass
//! collects structural signals (digit/operator expressions, question marks,
//! multiple-choice option markers, code-like line endings).
//!
//! [`TextClassifier::task`] and [`TextClassifier::risk_domains`] each run the
//! automaton once; [`TextClassifier::analyze`] returns both from a single pass
//! (prefer it when both are needed). Cost is linear in the text length: one
//! DFA transition per byte per pass plus one cheap byte-class pass for
//! `task` (~10 µs per pass for 2 KB measured on a busy 2-vCPU machine).
//!
//! # Cue table syntax
//!
//! Each cue is a literal matched ASCII case-insensitively with word
//! boundaries: when the cue starts (ends) with an ASCII alphanumeric byte the
//! byte before (after) the match must not be a word byte (`[A-Za-z0-9_]`).
//! A trailing `*` makes the cue a prefix (`summar*` matches `summarize`,
//! `summary`, ...). A leading `!` makes it case-sensitive (`!SELECT `).
//!
//! # Task scoring
//!
//! Scores are additive and exposed raw in [`TaskSignals::scores`]:
//!
//! * every cue occurrence adds its weight (at most [`MAX_CUE_HITS`] occurrences
//!   per cue), ×[`EDGE_BOOST`] when it starts in the first or last
//!   [`EDGE_BYTES`] bytes, where instructions usually are;
//! * math gets +1.5 per `operand op operand` expression (`3 + 4`, `x = 12`,
//!   `2^3`; `-` and `/` count half) up to +4.5, +1/+1.5/+2 for texts with
//!   2/3/4+ numbers (`10,000` is one number) and +1 when a text with 2+
//!   numbers ends with `?`;
//! * qa gets +1 when the text ends with `?`, +0.5 for any `?`, +0.5 when the
//!   first word is a question word and +1/+3 for 2/3+ multiple-choice option
//!   markers (`A.`, `(B)`, `c)`);
//! * code gets +1.5/+3 for 2/4+ lines ending in `;`, `{` or `}`;
//! * chat starts from a prior of [`CHAT_PRIOR`], so it wins when nothing else
//!   is indicated, plus 0.5 for texts of at most three words without a
//!   question mark.
//!
//! The task is the highest score; ties go to the first in [`TIE_PRIORITY`]
//! (Code, Math, Extraction, Classification, Summarization, Qa, Chat). When no
//! non-chat task reaches the chat score and the text is a question, Qa wins
//! via its question bonuses.
//!
//! # Risk domains
//!
//! Each *distinct* domain cue found adds its weight once; a domain is reported
//! when its total reaches 1.0. Unambiguous terms weigh 1.0, ambiguous ones
//! (`patient`, `court`, `contract`, `resume`, ...) 0.5 or less, so they need
//! corroboration.

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};

/// Kind of work a prompt asks for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum TaskType {
    Code,
    Math,
    Extraction,
    Classification,
    Summarization,
    Chat,
    Qa,
}

impl TaskType {
    /// Every task type, in declaration (and `Ord`) order; also the order of
    /// [`TaskSignals::scores`].
    pub const ALL: [TaskType; 7] = [
        TaskType::Code,
        TaskType::Math,
        TaskType::Extraction,
        TaskType::Classification,
        TaskType::Summarization,
        TaskType::Chat,
        TaskType::Qa,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskType::Code => "code",
            TaskType::Math => "math",
            TaskType::Extraction => "extraction",
            TaskType::Classification => "classification",
            TaskType::Summarization => "summarization",
            TaskType::Chat => "chat",
            TaskType::Qa => "qa",
        }
    }

    /// Inverse of [`TaskType::as_str`] (exact match).
    pub fn parse(s: &str) -> Option<TaskType> {
        TaskType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// High-stakes subject area of a prompt.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum RiskDomain {
    Medical,
    Legal,
    Financial,
    Employment,
}

impl RiskDomain {
    /// Every domain, in declaration (and `Ord`) order.
    pub const ALL: [RiskDomain; 4] = [
        RiskDomain::Medical,
        RiskDomain::Legal,
        RiskDomain::Financial,
        RiskDomain::Employment,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RiskDomain::Medical => "medical",
            RiskDomain::Legal => "legal",
            RiskDomain::Financial => "financial",
            RiskDomain::Employment => "employment",
        }
    }

    /// Inverse of [`RiskDomain::as_str`] (exact match).
    pub fn parse(s: &str) -> Option<RiskDomain> {
        RiskDomain::ALL.into_iter().find(|d| d.as_str() == s)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Detected task plus the raw per-task scores (in [`TaskType::ALL`] order).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSignals {
    pub task: TaskType,
    pub scores: [f32; 7],
}

impl TaskSignals {
    /// Score of one task type.
    pub fn score(&self, task: TaskType) -> f32 {
        self.scores.get(task.index()).copied().unwrap_or(0.0)
    }
}

/// Error building a [`TextClassifier`].
#[derive(Debug, thiserror::Error)]
pub enum ClassifyError {
    #[error("failed to build text classifier matcher: {0}")]
    Matcher(#[from] aho_corasick::BuildError),
}

/// Occurrences of one cue counted towards a task score.
pub const MAX_CUE_HITS: u8 = 3;
/// Cues starting within this many bytes of either end of the text are boosted.
pub const EDGE_BYTES: usize = 200;
/// Multiplier for cues near the start or end of the text.
pub const EDGE_BOOST: f32 = 1.25;
/// Baseline chat score.
pub const CHAT_PRIOR: f32 = 1.0;
/// Tie-break order (earlier wins).
pub const TIE_PRIORITY: [TaskType; 7] = [
    TaskType::Code,
    TaskType::Math,
    TaskType::Extraction,
    TaskType::Classification,
    TaskType::Summarization,
    TaskType::Qa,
    TaskType::Chat,
];
/// Summed cue weight at which a risk domain is reported.
pub const DOMAIN_THRESHOLD: f32 = 1.0;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    Task(TaskType),
    Domain(RiskDomain),
}

use RiskDomain::{Employment as EMP, Financial as FIN, Legal as LEG, Medical as MED};
use TaskType::{
    Chat as CHAT, Classification as CLS, Code as CODE, Extraction as EXT, Math as MATH, Qa as QA,
    Summarization as SUM,
};

const fn t(pat: &'static str, task: TaskType, w: f32) -> (&'static str, Target, f32) {
    (pat, Target::Task(task), w)
}

const fn d(pat: &'static str, dom: RiskDomain, w: f32) -> (&'static str, Target, f32) {
    (pat, Target::Domain(dom), w)
}

/// The cue table. See the module docs for the syntax.
const CUES: &[(&str, Target, f32)] = &[
    // ---- code ----
    t("```", CODE, 3.0),
    t("def ", CODE, 1.5),
    t("fn ", CODE, 1.0),
    t("fn main", CODE, 2.0),
    t("function", CODE, 0.75),
    t("function(", CODE, 2.0),
    t("func ", CODE, 1.0),
    t("class ", CODE, 0.5),
    t("#include", CODE, 3.0),
    t("import ", CODE, 0.5),
    t("!SELECT ", CODE, 1.5),
    t("!FROM ", CODE, 0.75),
    t("!WHERE ", CODE, 0.5),
    t("insert into", CODE, 2.5),
    t("create table", CODE, 2.5),
    t("!GROUP BY", CODE, 1.0),
    t("sql", CODE, 2.0),
    t("traceback", CODE, 3.0),
    t("stack trace", CODE, 2.5),
    t("stacktrace", CODE, 2.5),
    t("exception", CODE, 1.0),
    t("segmentation fault", CODE, 3.0),
    t("segfault", CODE, 3.0),
    t("panicked at", CODE, 3.0),
    t("nullpointerexception", CODE, 3.0),
    t("typeerror", CODE, 2.5),
    t("syntaxerror", CODE, 2.5),
    t("valueerror", CODE, 2.5),
    t("keyerror", CODE, 2.5),
    t("indexerror", CODE, 2.5),
    t("attributeerror", CODE, 2.5),
    t("importerror", CODE, 2.5),
    t("modulenotfounderror", CODE, 2.5),
    t("undefined reference", CODE, 2.5),
    t("is not defined", CODE, 1.5),
    t("compile", CODE, 1.0),
    t("compiles", CODE, 1.0),
    t("compiling", CODE, 1.0),
    t("compiler", CODE, 2.0),
    t("compilation", CODE, 1.0),
    t("compile error", CODE, 2.5),
    t("bug", CODE, 1.25),
    t("bugs", CODE, 1.0),
    t("debug*", CODE, 2.0),
    t("regex", CODE, 2.5),
    t("regexp", CODE, 2.5),
    t("regular expression", CODE, 2.5),
    t("python", CODE, 2.0),
    t("javascript", CODE, 2.5),
    t("typescript", CODE, 2.5),
    t("java", CODE, 1.25),
    t("rust", CODE, 0.75),
    t("golang", CODE, 2.5),
    t("c++", CODE, 2.5),
    t("c#", CODE, 2.0),
    t("kotlin", CODE, 2.0),
    t("php", CODE, 2.0),
    t("html", CODE, 1.5),
    t("css", CODE, 1.5),
    t("bash", CODE, 1.5),
    t("shell script", CODE, 2.5),
    t("powershell", CODE, 2.0),
    t("node.js", CODE, 2.0),
    t("django", CODE, 2.0),
    t("pandas", CODE, 1.5),
    t("numpy", CODE, 2.0),
    t("dataframe", CODE, 2.0),
    t("api", CODE, 0.75),
    t("endpoint", CODE, 1.0),
    t("algorithm", CODE, 1.25),
    t("implement", CODE, 1.0),
    t("refactor*", CODE, 3.0),
    t("unit test*", CODE, 2.5),
    t("write a function", CODE, 3.0),
    t("write a program", CODE, 3.0),
    t("write a script", CODE, 3.0),
    t("write code", CODE, 3.0),
    t("script", CODE, 1.0),
    t("snippet", CODE, 1.5),
    t("code", CODE, 1.5),
    t("codebase", CODE, 2.5),
    t("source code", CODE, 2.5),
    t("variable", CODE, 0.75),
    t("array", CODE, 1.25),
    t("linked list", CODE, 2.5),
    t("binary tree", CODE, 2.5),
    t("hashmap", CODE, 2.0),
    t("hash map", CODE, 2.0),
    t("recursion", CODE, 1.5),
    t("recursive", CODE, 1.25),
    t("git commit", CODE, 2.5),
    t("github", CODE, 1.25),
    t("docker*", CODE, 2.0),
    t("kubernetes", CODE, 2.0),
    t("npm ", CODE, 2.0),
    t("pip install", CODE, 3.0),
    t("stdout", CODE, 2.0),
    t("stderr", CODE, 2.0),
    t("localhost", CODE, 2.0),
    t("console.log", CODE, 3.0),
    t("println!", CODE, 3.0),
    t("printf(", CODE, 2.5),
    t("print(", CODE, 2.0),
    t("system.out", CODE, 3.0),
    t("public static void", CODE, 3.0),
    t("return ", CODE, 0.5),
    t("=>", CODE, 0.75),
    t("!==", CODE, 2.0),
    t("===", CODE, 1.5),
    t("&&", CODE, 1.0),
    t("();", CODE, 2.0),
    t("async ", CODE, 1.0),
    t("await ", CODE, 1.0),
    t("lambda", CODE, 1.0),
    t("let mut", CODE, 3.0),
    t("int main", CODE, 3.0),
    t("std::", CODE, 3.0),
    t("self.", CODE, 1.5),
    t("#!/", CODE, 3.0),
    t("<div", CODE, 2.5),
    t(".py", CODE, 2.0),
    t(".js", CODE, 2.0),
    t(".ts", CODE, 1.5),
    t(".tsx", CODE, 2.0),
    t(".jsx", CODE, 2.0),
    t(".rs", CODE, 1.5),
    t(".java", CODE, 2.0),
    t(".cpp", CODE, 2.5),
    t(".rb", CODE, 1.5),
    t(".php", CODE, 2.0),
    t(".sql", CODE, 2.0),
    t(".sh", CODE, 1.5),
    t(".yaml", CODE, 1.5),
    t(".yml", CODE, 1.5),
    t(".toml", CODE, 2.0),
    t(".ipynb", CODE, 2.0),
    t("parse", CODE, 0.5),
    // ---- math ----
    t("solve", MATH, 2.0),
    t("solve for", MATH, 3.0),
    t("calculate", MATH, 2.5),
    t("calculation*", MATH, 1.5),
    t("compute", MATH, 1.25),
    t("how many", MATH, 2.5),
    t("how much", MATH, 2.0),
    t("how far", MATH, 2.0),
    t("how fast", MATH, 1.5),
    t("how old", MATH, 1.5),
    t("how long will", MATH, 1.0),
    t("value of", MATH, 1.0),
    t("discount*", MATH, 1.0),
    t("miles", MATH, 0.5),
    t("integral", MATH, 3.0),
    t("integrate", MATH, 2.0),
    t("derivative", MATH, 3.0),
    t("differentiate", MATH, 2.0),
    t("probability", MATH, 3.0),
    t("equation*", MATH, 2.5),
    t("formula", MATH, 1.0),
    t("percent*", MATH, 1.5),
    t("%", MATH, 0.75),
    t("sum of", MATH, 1.5),
    t("product of", MATH, 1.0),
    t("average", MATH, 1.0),
    t("mean of", MATH, 1.0),
    t("median", MATH, 1.5),
    t("total", MATH, 0.5),
    t("in total", MATH, 1.0),
    t("altogether", MATH, 1.5),
    t("remainder", MATH, 1.5),
    t("divisible", MATH, 2.0),
    t("divided by", MATH, 2.0),
    t("multiplied by", MATH, 2.0),
    t("times as many", MATH, 2.0),
    t("times as much", MATH, 2.0),
    t("half as", MATH, 1.0),
    t("twice as", MATH, 1.0),
    t("prime number*", MATH, 2.0),
    t("square root", MATH, 2.5),
    t("sqrt", MATH, 2.0),
    t("\\frac", MATH, 2.5),
    t("\\sqrt", MATH, 2.5),
    t("\\int", MATH, 2.5),
    t("$$", MATH, 1.0),
    t("x^2", MATH, 2.5),
    t("f(x)", MATH, 2.5),
    t("value of x", MATH, 3.0),
    t("simplify", MATH, 2.0),
    t("factori*", MATH, 1.5),
    t("fraction*", MATH, 1.5),
    t("ratio", MATH, 1.25),
    t("proportion", MATH, 1.0),
    t("geometry", MATH, 2.0),
    t("triangle", MATH, 1.25),
    t("radius", MATH, 1.5),
    t("area of", MATH, 1.5),
    t("perimeter", MATH, 2.0),
    t("volume of", MATH, 1.5),
    t("algebra*", MATH, 2.0),
    t("calculus", MATH, 2.5),
    t("matrices", MATH, 1.5),
    t("polynomial", MATH, 2.5),
    t("theorem", MATH, 2.0),
    t("prove that", MATH, 2.5),
    t("arithmetic", MATH, 2.0),
    t("math", MATH, 2.5),
    t("maths", MATH, 2.5),
    t("mathematics", MATH, 2.5),
    t("expected value", MATH, 2.5),
    t("standard deviation", MATH, 2.5),
    t("variance", MATH, 1.5),
    t("compound interest", MATH, 2.0),
    t("per hour", MATH, 0.75),
    t("dollars", MATH, 0.5),
    t("cents", MATH, 0.75),
    t("\u{d7}", MATH, 1.5),
    t("\u{f7}", MATH, 2.0),
    t("\u{221a}", MATH, 2.0),
    t("\u{3c0}", MATH, 1.5),
    t("\u{2264}", MATH, 1.0),
    t("\u{2265}", MATH, 1.0),
    // ---- extraction ----
    t("extract*", EXT, 3.0),
    t("pull out", EXT, 2.0),
    t("list all the", EXT, 2.5),
    t("list all", EXT, 1.5),
    t("find all", EXT, 1.25),
    t("identify all", EXT, 1.5),
    t("named entit*", EXT, 3.0),
    t("entities", EXT, 2.0),
    t("parse", EXT, 1.5),
    t("into json", EXT, 2.5),
    t("as json", EXT, 2.0),
    t("in json", EXT, 1.5),
    t("json", EXT, 0.75),
    t("json object", EXT, 1.5),
    t("json format", EXT, 1.5),
    t("fields", EXT, 1.25),
    t("key-value", EXT, 1.5),
    t("key value pairs", EXT, 1.5),
    t("structured data", EXT, 1.5),
    t("from the following text", EXT, 1.0),
    t("from the text", EXT, 1.0),
    t("from this text", EXT, 1.0),
    t("from the document", EXT, 1.0),
    t("email addresses", EXT, 1.0),
    t("phone numbers", EXT, 1.0),
    t("dates mentioned", EXT, 2.0),
    t("names of all", EXT, 2.0),
    t("return a list", EXT, 1.25),
    t("output a list", EXT, 1.25),
    t("csv", EXT, 0.75),
    t("schema", EXT, 1.0),
    // ---- classification ----
    t("classify", CLS, 3.0),
    t("classification", CLS, 2.0),
    t("categorize", CLS, 3.0),
    t("categorise", CLS, 3.0),
    t("categorization", CLS, 2.0),
    t("category", CLS, 1.5),
    t("categories", CLS, 1.5),
    t("sentiment", CLS, 3.0),
    t("label", CLS, 1.5),
    t("labels", CLS, 1.25),
    t("is this spam", CLS, 3.0),
    t("spam or", CLS, 2.5),
    t("spam", CLS, 1.0),
    t("positive or negative", CLS, 3.0),
    t("positive, negative", CLS, 2.0),
    t("neutral", CLS, 1.0),
    t("toxic", CLS, 1.25),
    t("toxicity", CLS, 2.0),
    t("intent", CLS, 1.0),
    t("which category", CLS, 3.0),
    t("which class", CLS, 2.0),
    t("one of the following categories", CLS, 3.0),
    t("is this review", CLS, 1.5),
    t("is this email", CLS, 1.0),
    t("genre", CLS, 1.0),
    t("detect the language", CLS, 2.0),
    // ---- summarization ----
    t("summar*", SUM, 3.0),
    t("tl;dr", SUM, 3.0),
    t("tldr", SUM, 3.0),
    t("key points", SUM, 2.0),
    t("main points", SUM, 2.0),
    t("key takeaways", SUM, 2.0),
    t("takeaways", SUM, 1.5),
    t("condense", SUM, 3.0),
    t("in a nutshell", SUM, 1.5),
    t("in one sentence", SUM, 1.5),
    t("in a few sentences", SUM, 1.5),
    t("brief overview", SUM, 1.5),
    t("gist", SUM, 2.0),
    t("recap", SUM, 2.0),
    t("shorten", SUM, 2.0),
    t("bullet points", SUM, 1.0),
    t("main idea", SUM, 2.0),
    t("boil down", SUM, 2.0),
    t("synopsis", SUM, 2.5),
    t("paraphrase", SUM, 1.0),
    t("short version", SUM, 1.5),
    // ---- chat ----
    t("hi", CHAT, 1.5),
    t("hello", CHAT, 1.5),
    t("hey", CHAT, 1.5),
    t("hiya", CHAT, 1.5),
    t("good morning", CHAT, 1.5),
    t("good evening", CHAT, 1.5),
    t("good night", CHAT, 1.5),
    t("thanks", CHAT, 1.5),
    t("thank you", CHAT, 1.5),
    t("how are you", CHAT, 3.0),
    t("how's it going", CHAT, 3.0),
    t("what's up", CHAT, 2.0),
    t("whats up", CHAT, 2.0),
    t("nice to meet", CHAT, 2.0),
    t("let's chat", CHAT, 2.0),
    t("chat", CHAT, 0.75),
    t("talk to me", CHAT, 2.0),
    t("role-play", CHAT, 3.0),
    t("roleplay", CHAT, 3.0),
    t("role play", CHAT, 3.0),
    t("pretend you are", CHAT, 2.5),
    t("pretend to be", CHAT, 2.5),
    t("act as", CHAT, 1.5),
    t("in character", CHAT, 1.5),
    t("tell me a joke", CHAT, 3.0),
    t("joke", CHAT, 1.5),
    t("lol", CHAT, 1.5),
    t("haha", CHAT, 1.5),
    t("bye", CHAT, 1.5),
    t("goodbye", CHAT, 1.5),
    t("i feel", CHAT, 1.0),
    t("i'm feeling", CHAT, 1.5),
    t("how was your day", CHAT, 3.0),
    t("your favorite", CHAT, 1.5),
    t("do you like", CHAT, 1.5),
    t("write a story", CHAT, 1.5),
    t("write a poem", CHAT, 1.5),
    t("poem", CHAT, 0.75),
    // ---- qa ----
    t("what is", QA, 1.0),
    t("what are", QA, 1.0),
    t("what was", QA, 1.25),
    t("what were", QA, 1.25),
    t("what does", QA, 1.5),
    t("who is", QA, 1.5),
    t("who was", QA, 1.5),
    t("who wrote", QA, 2.0),
    t("who invented", QA, 2.0),
    t("who discovered", QA, 2.0),
    t("when did", QA, 1.5),
    t("when was", QA, 1.5),
    t("where is", QA, 1.5),
    t("where was", QA, 1.5),
    t("where did", QA, 1.5),
    t("why does", QA, 1.5),
    t("why is", QA, 1.5),
    t("why do", QA, 1.5),
    t("why did", QA, 1.5),
    t("how does", QA, 1.5),
    t("how do", QA, 1.25),
    t("how did", QA, 1.25),
    t("how to", QA, 1.0),
    t("which of the following", QA, 2.0),
    t("explain", QA, 1.5),
    t("define", QA, 1.5),
    t("describe", QA, 1.25),
    t("definition of", QA, 1.5),
    t("meaning of", QA, 1.5),
    t("difference between", QA, 1.5),
    t("tell me about", QA, 1.5),
    t("answer:", QA, 2.0),
    t("question:", QA, 1.5),
    t("true or false", QA, 2.0),
    t("correct answer", QA, 2.0),
    t("best describes", QA, 2.0),
    t("capital of", QA, 1.5),
    t("according to", QA, 1.0),
    t("can you tell me", QA, 1.0),
    t("do you know", QA, 1.0),
    // ---- medical ----
    d("diagnos*", MED, 1.0),
    d("symptom*", MED, 1.0),
    d("dosage", MED, 1.0),
    d("dose of", MED, 1.0),
    d("medication*", MED, 1.0),
    d("medicine", MED, 0.75),
    d("medical", MED, 1.0),
    d("patient", MED, 0.5),
    d("patients", MED, 1.0),
    d("prescription*", MED, 1.0),
    d("prescribe", MED, 0.75),
    d("prescribed", MED, 0.75),
    d("surgery", MED, 1.0),
    d("surgeon", MED, 1.0),
    d("surgical", MED, 1.0),
    d("disease", MED, 1.0),
    d("diseases", MED, 1.0),
    d("cancer", MED, 1.0),
    d("tumor", MED, 1.0),
    d("tumour", MED, 1.0),
    d("chemotherapy", MED, 1.0),
    d("antibiotic*", MED, 1.0),
    d("side effects", MED, 1.0),
    d("blood pressure", MED, 1.0),
    d("diabetes", MED, 1.0),
    d("insulin", MED, 1.0),
    d("overdose", MED, 1.0),
    d("pregnan*", MED, 1.0),
    d("doctor", MED, 0.5),
    d("physician", MED, 1.0),
    d("clinical", MED, 0.75),
    d("clinic", MED, 0.75),
    d("therapy", MED, 0.5),
    d("therapist", MED, 0.75),
    d("vaccine*", MED, 1.0),
    d("vaccination", MED, 1.0),
    d("infection*", MED, 1.0),
    d("mental health", MED, 1.0),
    d("depression", MED, 0.5),
    d("anxiety", MED, 0.5),
    d("allergy", MED, 1.0),
    d("allergic", MED, 1.0),
    d("allergies", MED, 1.0),
    d("chest pain", MED, 1.0),
    d("fever", MED, 0.75),
    d("ibuprofen", MED, 1.0),
    d("acetaminophen", MED, 1.0),
    d("paracetamol", MED, 1.0),
    d("hospital", MED, 0.75),
    d("emergency room", MED, 1.0),
    d("treatment", MED, 0.5),
    d("treatment options", MED, 1.0),
    d("milligrams", MED, 0.5),
    d("medical history", MED, 1.0),
    d("prognosis", MED, 1.0),
    d("chronic", MED, 0.5),
    d("heart attack", MED, 1.0),
    d("nurse", MED, 0.5),
    d("pharmacist", MED, 1.0),
    d("contraindicat*", MED, 1.0),
    d("drug interaction*", MED, 1.0),
    d("opioid*", MED, 1.0),
    d("dementia", MED, 1.0),
    d("asthma", MED, 1.0),
    d("seizure*", MED, 1.0),
    // ---- legal ----
    d("lawsuit*", LEG, 1.0),
    d("sued", LEG, 1.0),
    d("suing", LEG, 1.0),
    d("sue my", LEG, 1.0),
    d("sue the", LEG, 1.0),
    d("sue them", LEG, 1.0),
    d("contract", LEG, 0.5),
    d("contracts", LEG, 0.5),
    d("breach of contract", LEG, 1.0),
    d("employment contract", LEG, 1.0),
    d("liability", LEG, 0.75),
    d("liable", LEG, 1.0),
    d("attorney*", LEG, 1.0),
    d("lawyer*", LEG, 1.0),
    d("legal advice", LEG, 1.0),
    d("legal risk*", LEG, 1.0),
    d("legal", LEG, 0.75),
    d("legally", LEG, 0.75),
    d("illegal", LEG, 0.5),
    d("court", LEG, 0.5),
    d("in court", LEG, 1.0),
    d("court order", LEG, 1.0),
    d("court case", LEG, 1.0),
    d("custody", LEG, 1.0),
    d("visa", LEG, 0.5),
    d("visa application", LEG, 1.0),
    d("immigration", LEG, 1.0),
    d("green card", LEG, 1.0),
    d("work permit", LEG, 1.0),
    d("litigation", LEG, 1.0),
    d("plaintiff", LEG, 1.0),
    d("defendant", LEG, 1.0),
    d("prosecut*", LEG, 1.0),
    d("felony", LEG, 1.0),
    d("misdemeanor", LEG, 1.0),
    d("divorce", LEG, 1.0),
    d("evict*", LEG, 1.0),
    d("tenant rights", LEG, 1.0),
    d("landlord", LEG, 0.5),
    d("tenant", LEG, 0.5),
    d("lease", LEG, 0.5),
    d("copyright infringement", LEG, 1.0),
    d("copyright", LEG, 0.5),
    d("trademark", LEG, 0.75),
    d("patent", LEG, 0.5),
    d("non-disclosure agreement", LEG, 1.0),
    d("nda", LEG, 0.75),
    d("subpoena", LEG, 1.0),
    d("arrested", LEG, 0.75),
    d("statute*", LEG, 1.0),
    d("jurisdiction", LEG, 1.0),
    d("settlement", LEG, 0.5),
    d("power of attorney", LEG, 1.0),
    d("last will", LEG, 1.0),
    d("gdpr", LEG, 0.75),
    d("criminal record", LEG, 1.0),
    d("criminal charges", LEG, 1.0),
    d("dui", LEG, 1.0),
    d("probation", LEG, 0.75),
    d("bail", LEG, 0.75),
    d("small claims", LEG, 1.0),
    d("judge", LEG, 0.5),
    d("legal rights", LEG, 1.0),
    d("intellectual property", LEG, 0.75),
    d("class action", LEG, 1.0),
    d("indemnif*", LEG, 1.0),
    d("arbitration", LEG, 1.0),
    d("defamation", LEG, 1.0),
    d("libel", LEG, 1.0),
    d("slander", LEG, 1.0),
    d("wrongful termination", LEG, 1.0),
    // ---- financial ----
    d("invest", FIN, 1.0),
    d("investing", FIN, 1.0),
    d("investment*", FIN, 1.0),
    d("investor*", FIN, 0.75),
    d("loan*", FIN, 1.0),
    d("mortgage*", FIN, 1.0),
    d("tax", FIN, 0.75),
    d("taxes", FIN, 0.75),
    d("tax return", FIN, 1.0),
    d("taxable", FIN, 1.0),
    d("income tax", FIN, 1.0),
    d("portfolio", FIN, 0.5),
    d("credit score", FIN, 1.0),
    d("credit report", FIN, 1.0),
    d("credit card debt", FIN, 1.0),
    d("credit card", FIN, 0.5),
    d("bankrupt*", FIN, 1.0),
    d("retirement", FIN, 1.0),
    d("401(k)", FIN, 1.0),
    d("401k", FIN, 1.0),
    d("roth ira", FIN, 1.0),
    d("stock market", FIN, 1.0),
    d("stocks", FIN, 0.75),
    d("shares of", FIN, 0.5),
    d("dividend*", FIN, 1.0),
    d("crypto", FIN, 0.75),
    d("cryptocurrency", FIN, 1.0),
    d("bitcoin", FIN, 0.75),
    d("interest rate*", FIN, 1.0),
    d("debt", FIN, 0.75),
    d("refinanc*", FIN, 1.0),
    d("budget", FIN, 0.5),
    d("budgeting", FIN, 0.75),
    d("savings account", FIN, 1.0),
    d("financial advice", FIN, 1.0),
    d("financial advisor", FIN, 1.0),
    d("financial planning", FIN, 1.0),
    d("insurance", FIN, 0.5),
    d("life insurance", FIN, 1.0),
    d("annuit*", FIN, 1.0),
    d("etf", FIN, 0.75),
    d("etfs", FIN, 0.75),
    d("index fund*", FIN, 1.0),
    d("mutual fund*", FIN, 1.0),
    d("capital gains", FIN, 1.0),
    d("irs", FIN, 1.0),
    d("net worth", FIN, 1.0),
    d("pension", FIN, 1.0),
    d("brokerage", FIN, 1.0),
    d("day trading", FIN, 1.0),
    d("forex", FIN, 1.0),
    d("hedge fund", FIN, 1.0),
    d("personal finance", FIN, 1.0),
    // ---- employment ----
    d("hiring", EMP, 1.0),
    d("hire", EMP, 0.5),
    d("fire an employee", EMP, 1.0),
    d("fire my employee", EMP, 1.0),
    d("firing an employee", EMP, 1.0),
    d("fire someone", EMP, 0.75),
    d("got fired", EMP, 1.0),
    d("been fired", EMP, 1.0),
    d("fired from", EMP, 1.0),
    d("terminate an employee", EMP, 1.0),
    d("terminating an employee", EMP, 1.0),
    d("termination of employment", EMP, 1.0),
    d("wrongful termination", EMP, 1.0),
    d("wrongful dismissal", EMP, 1.0),
    d("unfair dismissal", EMP, 1.0),
    d("employee", EMP, 0.5),
    d("employees", EMP, 0.5),
    d("employer", EMP, 0.5),
    d("employment contract", EMP, 1.0),
    d("salary negotiation", EMP, 1.0),
    d("negotiate my salary", EMP, 1.0),
    d("negotiate salary", EMP, 1.0),
    d("negotiating salary", EMP, 1.0),
    d("salary", EMP, 0.5),
    d("pay raise", EMP, 1.0),
    d("candidate screening", EMP, 1.0),
    d("screen candidates", EMP, 1.0),
    d("screening candidates", EMP, 1.0),
    d("screen resumes", EMP, 1.0),
    d("job candidate*", EMP, 1.0),
    d("candidates", EMP, 0.5),
    d("resume", EMP, 0.5),
    d("resumes", EMP, 0.75),
    d("r\u{e9}sum\u{e9}", EMP, 1.0),
    d("cv", EMP, 0.5),
    d("performance review*", EMP, 1.0),
    d("performance improvement plan", EMP, 1.0),
    d("layoff*", EMP, 1.0),
    d("laid off", EMP, 1.0),
    d("lay off", EMP, 1.0),
    d("job interview", EMP, 1.0),
    d("interview candidates", EMP, 1.0),
    d("job offer", EMP, 1.0),
    d("job application", EMP, 1.0),
    d("recruit*", EMP, 0.75),
    d("background check", EMP, 1.0),
    d("hr department", EMP, 1.0),
    d("human resources", EMP, 1.0),
    d("workplace", EMP, 0.5),
    d("severance", EMP, 1.0),
    d("unemployment", EMP, 0.75),
    d("cover letter", EMP, 0.75),
    d("job posting", EMP, 1.0),
    d("job description", EMP, 0.75),
    d("non-compete", EMP, 1.0),
    d("hiring manager", EMP, 1.0),
    d("applicant*", EMP, 0.75),
];

/// Question words that make a text's first word a question cue.
const QUESTION_WORDS: &[&str] = &[
    "what", "which", "who", "whom", "whose", "when", "where", "why", "how", "is", "are", "was",
    "were", "do", "does", "did", "can", "could", "should", "would", "will", "may", "has", "have",
];

#[derive(Debug, Clone)]
struct CuePattern {
    /// Literal as matched (without flag characters).
    literal: String,
    /// Require a word boundary before the match.
    left_boundary: bool,
    /// Require a word boundary after the match.
    right_boundary: bool,
    /// Bytes must equal `literal` exactly.
    case_sensitive: bool,
    /// Every (target, weight) attached to this literal.
    targets: Vec<(Target, f32)>,
}

/// Compiled task / risk-domain classifier. Cheap to share (`Send + Sync`).
#[derive(Debug, Clone)]
pub struct TextClassifier {
    matcher: AhoCorasick,
    cues: Vec<CuePattern>,
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

impl TextClassifier {
    pub fn new() -> Result<TextClassifier, ClassifyError> {
        let mut cues: Vec<CuePattern> = Vec::with_capacity(CUES.len());
        for &(raw, target, weight) in CUES {
            let (case_sensitive, rest) = match raw.strip_prefix('!') {
                Some(r) => (true, r),
                None => (false, raw),
            };
            let (prefix, literal) = match rest.strip_suffix('*') {
                Some(r) => (true, r),
                None => (false, rest),
            };
            let bytes = literal.as_bytes();
            let left_boundary = bytes.first().is_some_and(u8::is_ascii_alphanumeric);
            let right_boundary = !prefix && bytes.last().is_some_and(u8::is_ascii_alphanumeric);
            let same = |c: &CuePattern| {
                c.literal.eq_ignore_ascii_case(literal)
                    && c.left_boundary == left_boundary
                    && c.right_boundary == right_boundary
                    && c.case_sensitive == case_sensitive
            };
            match cues.iter_mut().find(|c| same(c)) {
                Some(c) => c.targets.push((target, weight)),
                None => cues.push(CuePattern {
                    literal: literal.to_string(),
                    left_boundary,
                    right_boundary,
                    case_sensitive,
                    targets: vec![(target, weight)],
                }),
            }
        }
        let matcher = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .kind(Some(AhoCorasickKind::DFA))
            .build(cues.iter().map(|c| c.literal.as_str()))?;
        Ok(TextClassifier { matcher, cues })
    }

    /// Detects the task type of `text`.
    pub fn task(&self, text: &str) -> TaskSignals {
        let cues = self.cue_scores(text);
        task_signals(text, &cues)
    }

    /// High-stakes domains mentioned in `text`, sorted and deduplicated.
    pub fn risk_domains(&self, text: &str) -> Vec<RiskDomain> {
        domains_from(&self.cue_scores(text))
    }

    /// [`TextClassifier::task`] and [`TextClassifier::risk_domains`] in one
    /// pass over the text (the keyword automaton dominates the cost, so this
    /// is almost twice as fast as calling both).
    pub fn analyze(&self, text: &str) -> (TaskSignals, Vec<RiskDomain>) {
        let cues = self.cue_scores(text);
        (task_signals(text, &cues), domains_from(&cues))
    }

    /// Runs the automaton once and accumulates task cue scores and domain
    /// cue totals.
    fn cue_scores(&self, text: &str) -> CueScores {
        let mut out = CueScores::default();
        if text.trim().is_empty() {
            return out;
        }
        let bytes = text.as_bytes();
        let len = bytes.len();
        let mut hits = vec![0u8; self.cues.len()];
        for m in self.matcher.find_overlapping_iter(text) {
            let id = m.pattern().as_usize();
            let Some(cue) = self.cues.get(id) else {
                continue;
            };
            let (start, end) = (m.start(), m.end());
            if cue.left_boundary
                && start
                    .checked_sub(1)
                    .and_then(|i| bytes.get(i))
                    .is_some_and(|&b| is_word_byte(b))
            {
                continue;
            }
            if cue.right_boundary && bytes.get(end).is_some_and(|&b| is_word_byte(b)) {
                continue;
            }
            if cue.case_sensitive && bytes.get(start..end) != Some(cue.literal.as_bytes()) {
                continue;
            }
            let Some(h) = hits.get_mut(id) else {
                continue;
            };
            *h = h.saturating_add(1);
            let h = *h;
            let boost = if start < EDGE_BYTES || start + EDGE_BYTES >= len {
                EDGE_BOOST
            } else {
                1.0
            };
            for &(target, weight) in &cue.targets {
                match target {
                    Target::Task(task) if h <= MAX_CUE_HITS => {
                        add(&mut out.tasks, task, weight * boost);
                    }
                    Target::Domain(dom) if h == 1 => {
                        if let Some(t) = out.domains.get_mut(dom.index()) {
                            *t += weight;
                        }
                    }
                    _ => {}
                }
            }
        }
        out
    }
}

/// Keyword-cue part of the scores.
#[derive(Debug, Default)]
struct CueScores {
    tasks: [f32; 7],
    domains: [f32; 4],
}

fn task_signals(text: &str, cues: &CueScores) -> TaskSignals {
    let mut scores = cues.tasks;
    add(&mut scores, CHAT, CHAT_PRIOR);
    if text.trim().is_empty() {
        return TaskSignals { task: CHAT, scores };
    }
    let s = Structure::scan(text.as_bytes());
    add(&mut scores, MATH, (1.5 * s.operator_score).min(4.5));
    match s.numbers {
        0 | 1 => {}
        2 => add(&mut scores, MATH, 1.0),
        3 => add(&mut scores, MATH, 1.5),
        _ => add(&mut scores, MATH, 2.0),
    }
    if s.numbers >= 2 && s.ends_with_question {
        // "What is 15 + 27?", "... How far does it go?"
        add(&mut scores, MATH, 1.0);
    }
    if s.ends_with_question {
        add(&mut scores, QA, 1.0);
    }
    if s.question_marks > 0 {
        add(&mut scores, QA, 0.5);
    }
    if starts_with_question_word(text) {
        add(&mut scores, QA, 0.5);
    }
    match s.choice_options {
        n if n >= 3 => add(&mut scores, QA, 3.0),
        2 => add(&mut scores, QA, 1.0),
        _ => {}
    }
    if s.code_lines >= 4 {
        add(&mut scores, CODE, 3.0);
    } else if s.code_lines >= 2 {
        add(&mut scores, CODE, 1.5);
    }
    if s.words <= 3 && s.question_marks == 0 {
        add(&mut scores, CHAT, 0.5);
    }
    TaskSignals {
        task: pick_task(&scores),
        scores,
    }
}

fn domains_from(cues: &CueScores) -> Vec<RiskDomain> {
    RiskDomain::ALL
        .into_iter()
        .zip(cues.domains)
        .filter(|&(_, total)| total >= DOMAIN_THRESHOLD)
        .map(|(dom, _)| dom)
        .collect()
}

/// Highest score wins; ties go to the earlier entry of [`TIE_PRIORITY`].
fn pick_task(scores: &[f32; 7]) -> TaskType {
    let mut task = CHAT;
    let mut best = f32::NEG_INFINITY;
    for candidate in TIE_PRIORITY {
        let sc = scores.get(candidate.index()).copied().unwrap_or(0.0);
        if sc > best {
            best = sc;
            task = candidate;
        }
    }
    task
}

fn add(scores: &mut [f32; 7], task: TaskType, w: f32) {
    if let Some(s) = scores.get_mut(task.index()) {
        *s += w;
    }
}

fn starts_with_question_word(text: &str) -> bool {
    let first = text
        .trim_start()
        .split(|c: char| !c.is_ascii_alphabetic() && c != '\'')
        .next()
        .unwrap_or("");
    let first = first.split('\'').next().unwrap_or("");
    QUESTION_WORDS.iter().any(|q| q.eq_ignore_ascii_case(first))
}

/// Structural signals gathered in one byte pass.
#[derive(Debug, Default)]
struct Structure {
    /// Weighted count of `operand op operand` expressions.
    operator_score: f32,
    /// Number of digit runs.
    numbers: usize,
    question_marks: usize,
    ends_with_question: bool,
    /// Distinct multiple-choice option letters (A–E) seen.
    choice_options: u32,
    /// Lines ending in `;`, `{` or `}`.
    code_lines: usize,
    /// Whitespace-separated words (`usize::MAX` for texts over 64 bytes).
    words: usize,
}

const B_NONE: u8 = 0;
const B_DIGIT: u8 = 1;
const B_NEWLINE: u8 = 2;
const B_QUESTION: u8 = 3;
const B_OP: u8 = 4;
const B_WEAK_OP: u8 = 5;
const B_CLOSE: u8 = 6;

/// Byte classes for [`Structure::scan`]; everything common is `B_NONE` so
/// the hot loop rarely branches.
static BYTE_CLASS: [u8; 256] = {
    let mut t = [B_NONE; 256];
    let mut c = b'0';
    while c <= b'9' {
        t[c as usize] = B_DIGIT;
        c += 1;
    }
    t[b'\n' as usize] = B_NEWLINE;
    t[b'?' as usize] = B_QUESTION;
    t[b'+' as usize] = B_OP;
    t[b'*' as usize] = B_OP;
    t[b'^' as usize] = B_OP;
    t[b'=' as usize] = B_OP;
    t[b'-' as usize] = B_WEAK_OP;
    t[b'/' as usize] = B_WEAK_OP;
    t[b'.' as usize] = B_CLOSE;
    t[b')' as usize] = B_CLOSE;
    t
};

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c')
}

impl Structure {
    fn scan(b: &[u8]) -> Structure {
        let mut s = Structure::default();
        let mut options: u32 = 0;
        for (i, &c) in b.iter().enumerate() {
            let class = BYTE_CLASS.get(usize::from(c)).copied().unwrap_or(B_NONE);
            if class == B_NONE {
                continue;
            }
            match class {
                B_DIGIT if number_starts_at(b, i) => s.numbers += 1,
                B_NEWLINE => {
                    if matches!(line_end_before(b, i), Some(b';' | b'{' | b'}')) {
                        s.code_lines += 1;
                    }
                }
                B_QUESTION => s.question_marks += 1,
                B_OP => s.operator_score += operator_at(b, i),
                B_WEAK_OP => s.operator_score += 0.5 * operator_at(b, i),
                B_CLOSE => {
                    if let Some(bit) = choice_option(b, i) {
                        options |= bit;
                    }
                }
                _ => {}
            }
        }
        // last line without a trailing newline
        let last_line_start = b.iter().rposition(|&c| c == b'\n').map_or(0, |p| p + 1);
        let tail = b.get(last_line_start..).unwrap_or(&[]);
        if matches!(line_end_before(tail, tail.len()), Some(b';' | b'{' | b'}')) {
            s.code_lines += 1;
        }
        s.ends_with_question = b.iter().rev().find(|&&c| !is_space(c)) == Some(&b'?');
        s.choice_options = options.count_ones();
        // Word counts only matter for very short texts.
        s.words = if b.len() <= 64 {
            b.split(|&c| is_space(c)).filter(|w| !w.is_empty()).count()
        } else {
            usize::MAX
        };
        s
    }
}

/// Last non-blank byte of the line that ends just before `i` (`None` for a
/// blank line).
fn line_end_before(b: &[u8], i: usize) -> Option<u8> {
    b.get(..i)?
        .iter()
        .rev()
        .find(|&&c| !matches!(c, b' ' | b'\t' | b'\r'))
        .copied()
        .filter(|&c| c != b'\n')
}

/// A number starts at a digit not preceded by a digit or by a digit-group
/// separator (`10,000` and `1.25` count once).
fn number_starts_at(b: &[u8], i: usize) -> bool {
    let at = |k: Option<usize>| k.and_then(|k| b.get(k)).copied();
    let prev = at(i.checked_sub(1));
    let prev2 = at(i.checked_sub(2));
    let continues_number = prev.is_some_and(|p| p.is_ascii_digit())
        || (matches!(prev, Some(b',' | b'.')) && prev2.is_some_and(|p| p.is_ascii_digit()));
    !continues_number
}

/// 1.0 when the operator at `i` sits between two operands (digits, closing /
/// opening parentheses or single-letter variables), else 0.0.
fn operator_at(b: &[u8], i: usize) -> f32 {
    let mut l = i;
    let mut skipped = 0;
    let left = loop {
        let Some(j) = l.checked_sub(1) else {
            break None;
        };
        match b.get(j) {
            Some(b' ') if skipped < 2 => {
                skipped += 1;
                l = j;
            }
            other => break other.map(|&c| (j, c)),
        }
    };
    let mut r = i + 1;
    let mut skipped = 0;
    let right = loop {
        match b.get(r) {
            Some(b' ') if skipped < 2 => {
                skipped += 1;
                r += 1;
            }
            other => break other.map(|&c| (r, c)),
        }
    };
    let left_ok = left.is_some_and(|(j, c)| {
        c.is_ascii_digit() || c == b')' || (c.is_ascii_alphabetic() && single_letter(b, j))
    });
    let right_ok = right.is_some_and(|(j, c)| {
        c.is_ascii_digit() || c == b'(' || (c.is_ascii_alphabetic() && single_letter(b, j))
    });
    if left_ok && right_ok { 1.0 } else { 0.0 }
}

/// True when the letter at `j` is a standalone single-letter token
/// (a variable such as `x`), or directly follows a digit (`3x`).
fn single_letter(b: &[u8], j: usize) -> bool {
    let before = j.checked_sub(1).and_then(|k| b.get(k)).copied();
    let after = b.get(j + 1).copied();
    let before_ok = before.is_none_or(|p| !p.is_ascii_alphabetic());
    let after_ok = after.is_none_or(|n| !n.is_ascii_alphanumeric());
    before_ok && after_ok
}

/// Recognises a multiple-choice option marker whose closing `.` / `)` is at
/// `i`: `A.` / `A)` / `(A)` (upper-case A–E) or `a)` / `(a)` (lower-case),
/// preceded by start of text, whitespace or `(` and followed by whitespace or
/// end of text. Returns the option's bit.
fn choice_option(b: &[u8], i: usize) -> Option<u32> {
    let close = *b.get(i)?;
    let letter = *b.get(i.checked_sub(1)?)?;
    let before = i.checked_sub(2).and_then(|k| b.get(k)).copied();
    let after = b.get(i + 1).copied();
    let letter_ok = match close {
        b'.' => (b'A'..=b'E').contains(&letter),
        b')' => (b'A'..=b'E').contains(&letter) || (b'a'..=b'e').contains(&letter),
        _ => false,
    };
    let before_ok = match before {
        None => true,
        Some(b'(') => close == b')',
        Some(p) => is_space(p),
    };
    let after_ok = after.is_none_or(is_space);
    if letter_ok && before_ok && after_ok {
        Some(1 << (letter.to_ascii_lowercase() - b'a'))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
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
            "Please summarise this paragraph: The quick brown fox jumps over the lazy dog."
                .to_string(),
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
}
