//! Task-type and high-stakes-domain detection from prompt text.
//!
//! [`TextClassifier`] is a weighted cue scorer. All keyword cues (for tasks and
//! risk domains) live in one ASCII case-insensitive Aho-Corasick automaton that
//! is run once over the text (overlapping matches); a single extra byte pass
//! collects structural signals (digit/operator expressions, question marks,
//! multiple-choice option markers, code-like line endings).
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
//! * math gets up to +4 for `operand op operand` expressions (`3 + 4`,
//!   `x = 12`, `2^3`) and +0.5/+1 for texts with 2/3+ numbers;
//! * qa gets +1.5 when the text ends with `?`, +0.5 for any `?`, +1 when the
//!   first word is a question word and +1/+3 for 2/3+ multiple-choice option
//!   markers (`A.`, `(B)`, `c)`);
//! * code gets +1.5/+3 for 2/4+ lines ending in `;`, `{` or `}`;
//! * chat starts from a prior of [`CHAT_PRIOR`] (+0.5 for very short texts), so
//!   it wins when nothing else is indicated.
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
    t("integral", MATH, 3.0),
    t("integrate", MATH, 2.0),
    t("derivative", MATH, 3.0),
    t("differentiate", MATH, 2.0),
    t("probability", MATH, 2.5),
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
    t("math", MATH, 2.0),
    t("maths", MATH, 2.0),
    t("mathematics", MATH, 1.5),
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
    t("what is", QA, 1.5),
    t("what are", QA, 1.5),
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
        let mut scores = [0f32; 7];
        add(&mut scores, CHAT, CHAT_PRIOR);
        if text.trim().is_empty() {
            return TaskSignals { task: CHAT, scores };
        }
        let bytes = text.as_bytes();
        let len = bytes.len();

        self.for_each_cue(text, |start, hits, target, weight| {
            if let Target::Task(task) = target
                && hits <= MAX_CUE_HITS
            {
                let boost = if start < EDGE_BYTES || start + EDGE_BYTES >= len {
                    EDGE_BOOST
                } else {
                    1.0
                };
                add(&mut scores, task, weight * boost);
            }
        });

        let s = Structure::scan(bytes);
        add(&mut scores, MATH, s.operator_score.min(4.0));
        if s.numbers >= 3 {
            add(&mut scores, MATH, 1.0);
        } else if s.numbers == 2 {
            add(&mut scores, MATH, 0.5);
        }
        if s.ends_with_question {
            add(&mut scores, QA, 1.5);
        }
        if s.question_marks > 0 {
            add(&mut scores, QA, 0.5);
        }
        if starts_with_question_word(text) {
            add(&mut scores, QA, 1.0);
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
        if s.words <= 4 && s.question_marks == 0 {
            add(&mut scores, CHAT, 0.5);
        }

        let mut task = CHAT;
        let mut best = f32::NEG_INFINITY;
        for candidate in TIE_PRIORITY {
            let sc = scores.get(candidate.index()).copied().unwrap_or(0.0);
            if sc > best {
                best = sc;
                task = candidate;
            }
        }
        TaskSignals { task, scores }
    }

    /// High-stakes domains mentioned in `text`, sorted and deduplicated.
    pub fn risk_domains(&self, text: &str) -> Vec<RiskDomain> {
        let mut totals = [0f32; 4];
        self.for_each_cue(text, |_, hits, target, weight| {
            if let Target::Domain(dom) = target
                && hits == 1
                && let Some(t) = totals.get_mut(dom.index())
            {
                *t += weight;
            }
        });
        RiskDomain::ALL
            .into_iter()
            .zip(totals)
            .filter(|&(_, total)| total >= DOMAIN_THRESHOLD)
            .map(|(dom, _)| dom)
            .collect()
    }

    /// Runs the automaton and calls `f(start, hits_so_far, target, weight)` for
    /// every boundary-valid cue occurrence (`hits_so_far` counts occurrences
    /// of the same literal, starting at 1).
    fn for_each_cue(&self, text: &str, mut f: impl FnMut(usize, u8, Target, f32)) {
        let bytes = text.as_bytes();
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
            for &(target, weight) in &cue.targets {
                f(start, h, target, weight);
            }
        }
    }
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
    /// Whitespace-separated words.
    words: usize,
}

impl Structure {
    fn scan(b: &[u8]) -> Structure {
        let mut s = Structure::default();
        let mut options: u32 = 0;
        let mut last_non_ws: Option<u8> = None;
        let mut line_last: Option<u8> = None;
        let mut prev: Option<u8> = None;
        for (i, &c) in b.iter().enumerate() {
            if c.is_ascii_digit() && !prev.is_some_and(|p| p.is_ascii_digit()) {
                s.numbers += 1;
            }
            if c.is_ascii_whitespace() && !prev.is_none_or(|p| p.is_ascii_whitespace()) {
                s.words += 1;
            }
            match c {
                b'?' => s.question_marks += 1,
                b'\n' => {
                    if matches!(line_last, Some(b';' | b'{' | b'}')) {
                        s.code_lines += 1;
                    }
                    line_last = None;
                }
                b'+' | b'*' | b'^' | b'=' => s.operator_score += operator_at(b, i),
                b'-' | b'/' => s.operator_score += 0.5 * operator_at(b, i),
                b'A'..=b'E' | b'a'..=b'e' => {
                    if let Some(bit) = choice_option(b, i) {
                        options |= bit;
                    }
                }
                _ => {}
            }
            if !c.is_ascii_whitespace() {
                last_non_ws = Some(c);
                line_last = Some(c);
            }
            prev = Some(c);
        }
        if !prev.is_none_or(|p| p.is_ascii_whitespace()) {
            s.words += 1;
        }
        if matches!(line_last, Some(b';' | b'{' | b'}')) {
            s.code_lines += 1;
        }
        s.ends_with_question = last_non_ws == Some(b'?');
        s.choice_options = options.count_ones();
        s
    }
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

/// Recognises a multiple-choice option marker at `i`: `A.` / `A)` / `(A)`
/// (upper-case A–E) or `a)` / `(a)` (lower-case), preceded by start of text,
/// whitespace or `(` and followed by whitespace or end of text. Returns the
/// option's bit.
fn choice_option(b: &[u8], i: usize) -> Option<u32> {
    let c = *b.get(i)?;
    let prev = i.checked_sub(1).and_then(|k| b.get(k)).copied();
    let next = b.get(i + 1).copied()?;
    let after = b.get(i + 2).copied();
    let prev_ok = prev.is_none_or(|p| p.is_ascii_whitespace() || p == b'(');
    let paren_open = prev == Some(b'(');
    let next_ok = if paren_open {
        next == b')'
    } else if c.is_ascii_uppercase() {
        next == b'.' || next == b')'
    } else {
        next == b')'
    };
    let after_ok = after.is_none_or(|a| a.is_ascii_whitespace());
    if prev_ok && next_ok && after_ok {
        Some(1 << (c.to_ascii_lowercase() - b'a'))
    } else {
        None
    }
}
