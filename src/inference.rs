//! ONNX inference for the learned routing classifier.
//!
//! A routing model is an ONNX graph with one `float32` input of shape `[batch, D]` (the feature
//! vector) and one `float32` output of shape `[batch, N]` (one score per candidate model). The
//! batch dimension may be dynamic; `D` and `N` must be known.
//!
//! Inference goes through the [`ort`] API over one of two backends, chosen once per process with
//! [`init_backend`]:
//! - [`Backend::OnnxRuntime`]: native ONNX Runtime (1.24 or newer), loaded at run time from a
//!   shared library, e.g. the one in the `onnxruntime` PyPI wheel (see [`find_onnxruntime`]);
//! - [`Backend::Tract`]: the pure-Rust `tract` engine compiled into the binary, so a fresh build
//!   runs with nothing installed (slower on wide inputs).
//!
//! [`Scorer`] holds a small pool of sessions (ONNX Runtime sessions are not safe to run
//! concurrently), each behind its own mutex with a reusable single-row input tensor; callers pick a
//! free one round-robin, so concurrent requests do not serialise on one lock.

use std::ffi::{CStr, CString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use ort::AsPointer;
use ort::environment::Environment;
use ort::memory::Allocator;
use ort::session::Session;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::value::{Tensor, TensorElementType, TensorRef, ValueType};
use parking_lot::{Mutex, MutexGuard};

/// Errors of the inference layer.
#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    /// The ONNX Runtime shared library could not be opened.
    #[error("cannot load ONNX Runtime library {}: {source}", path.display())]
    LoadLibrary {
        path: PathBuf,
        #[source]
        source: libloading::Error,
    },
    /// The shared library opened but is not ONNX Runtime.
    #[error("{} is not an ONNX Runtime library: {reason}", path.display())]
    NotOnnxRuntime { path: PathBuf, reason: String },
    /// The ONNX Runtime library is too old for the `ort` API compiled into this binary.
    #[error(
        "ONNX Runtime at {} is version {found}; version 1.{required_minor}.0 or newer is required",
        path.display()
    )]
    UnsupportedVersion {
        path: PathBuf,
        found: String,
        required_minor: u32,
    },
    /// [`init_backend`] was already called with a different backend in this process.
    #[error("inference backend already initialised as {current}; cannot switch to {requested}")]
    BackendConflict { current: String, requested: String },
    /// Something else in the process installed an `ort` API before [`init_backend`].
    #[error("the ort API was already set by other code in this process")]
    ApiAlreadySet,
    /// A scorer was requested before [`init_backend`] succeeded.
    #[error("no inference backend initialised; call inference::init_backend first")]
    NotInitialised,
    /// The session pool must hold at least one session.
    #[error("a scorer needs at least one session")]
    NoSessions,
    /// The model file could not be read.
    #[error("cannot read model {}: {source}", path.display())]
    ReadModel {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The model loaded but does not have the routing-model signature.
    #[error("unsupported model: {0}")]
    InvalidModel(String),
    /// A feature row of the wrong length.
    #[error("expected {expected} feature values, got {got}")]
    InputLength { expected: usize, got: usize },
    /// An output buffer of the wrong length.
    #[error("output buffer holds {got} values; the model produces {expected}")]
    OutputLength { expected: usize, got: usize },
    /// A batch whose size the model does not accept.
    #[error("the model takes batches of exactly {expected} rows, got {got}")]
    BatchSize { expected: usize, got: usize },
    /// The model produced an output of an unexpected shape.
    #[error("model output has shape {got:?}, expected {expected:?}")]
    OutputShape { expected: Vec<i64>, got: Vec<i64> },
    /// An error from the ONNX Runtime API (session creation, run, tensors).
    #[error("onnx runtime: {0}")]
    Ort(#[from] ort::Error),
    /// A status returned by a C API call of the backend (see [`run_raw`]).
    #[error("onnx runtime: {call}: {message}")]
    Api { call: &'static str, message: String },
}

/// Which engine executes the ONNX graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// Native ONNX Runtime, loaded from this shared library (`libonnxruntime.so*`).
    OnnxRuntime { library: PathBuf },
    /// The pure-Rust tract engine built into the binary.
    Tract,
}

impl Backend {
    /// Short name for logs and metrics: `"onnxruntime"` or `"tract"`.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::OnnxRuntime { .. } => "onnxruntime",
            Backend::Tract => "tract",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backend::OnnxRuntime { library } => write!(f, "onnxruntime ({})", library.display()),
            Backend::Tract => f.write_str("tract"),
        }
    }
}

/// The process-wide backend state: `ort` keeps its API table and environment in globals, so the
/// backend is chosen once and kept for the life of the process.
struct Initialised {
    backend: Backend,
    environment: Environment,
}

/// Serialises [`init_backend`] and records its outcome.
static STATE: Mutex<Option<Initialised>> = parking_lot::const_mutex(None);
/// The backend whose API table was handed to `ort::set_api` (which cannot be undone).
static API_BACKEND: OnceLock<Backend> = OnceLock::new();
/// The loaded ONNX Runtime library; never unloaded, since `ort` holds its function pointers.
static ORT_LIBRARY: OnceLock<libloading::Library> = OnceLock::new();

/// Chooses the inference backend for this process and creates the `ort` environment.
///
/// Call once at start-up before building any [`Scorer`]. Calling it again with the same backend
/// is a no-op; with a different backend it returns [`InferenceError::BackendConflict`]. A library
/// that cannot be opened, is not ONNX Runtime, or is older than the `ort` API in this binary
/// gives an error and leaves the process uninitialised, so another backend can still be chosen.
pub fn init_backend(backend: &Backend) -> Result<(), InferenceError> {
    let mut state = STATE.lock();
    if let Some(current) = state.as_ref() {
        return if current.backend == *backend {
            Ok(())
        } else {
            Err(conflict(&current.backend, backend))
        };
    }
    match API_BACKEND.get() {
        Some(installed) if installed != backend => return Err(conflict(installed, backend)),
        Some(_) => {}
        None => {
            let api = match backend {
                Backend::Tract => ort_tract::api(),
                Backend::OnnxRuntime { library } => load_onnxruntime(library)?,
            };
            if !ort::set_api(api) {
                return Err(InferenceError::ApiAlreadySet);
            }
            // Only this function sets the API, under the STATE lock, so the cell is empty here.
            let _ = API_BACKEND.set(backend.clone());
        }
    }
    let environment = ort::init().with_name("signalbox").build()?;
    tracing::info!(backend = %backend, "inference backend initialised");
    *state = Some(Initialised {
        backend: backend.clone(),
        environment,
    });
    Ok(())
}

/// The backend chosen by [`init_backend`], if any.
pub fn current_backend() -> Option<Backend> {
    STATE.lock().as_ref().map(|s| s.backend.clone())
}

fn conflict(current: &Backend, requested: &Backend) -> InferenceError {
    InferenceError::BackendConflict {
        current: current.to_string(),
        requested: requested.to_string(),
    }
}

/// The initialised backend and its environment.
fn initialised() -> Result<(Backend, Environment), InferenceError> {
    STATE
        .lock()
        .as_ref()
        .map(|s| (s.backend.clone(), s.environment.clone()))
        .ok_or(InferenceError::NotInitialised)
}

/// Opens an ONNX Runtime shared library, checks its version and returns its API table.
fn load_onnxruntime(path: &Path) -> Result<ort::sys::OrtApi, InferenceError> {
    let not_ort = |reason: &str| InferenceError::NotOnnxRuntime {
        path: path.to_path_buf(),
        reason: reason.to_owned(),
    };
    // SAFETY: loading a shared library runs its initialisers; the caller names the library, which
    // is expected to be ONNX Runtime. Everything taken from it is checked below before use.
    let library = unsafe { libloading::Library::new(path) }.map_err(|source| {
        InferenceError::LoadLibrary {
            path: path.to_path_buf(),
            source,
        }
    })?;
    let api = {
        // SAFETY: `OrtGetApiBase` has this signature in every ONNX Runtime release.
        let get_api_base = unsafe {
            library.get::<unsafe extern "C" fn() -> *const ort::sys::OrtApiBase>(c"OrtGetApiBase")
        }
        .map_err(|_| not_ort("no OrtGetApiBase symbol"))?;
        // SAFETY: calling the library's exported entry point; it returns a static table or null.
        let base = unsafe { get_api_base() };
        if base.is_null() {
            return Err(not_ort("OrtGetApiBase returned null"));
        }
        // SAFETY: `base` is non-null and points at the library's static OrtApiBase.
        let version_ptr = unsafe { ((*base).GetVersionString)() };
        if version_ptr.is_null() {
            return Err(not_ort("GetVersionString returned null"));
        }
        // SAFETY: ONNX Runtime returns a static NUL-terminated string.
        let version = unsafe { CStr::from_ptr(version_ptr) }
            .to_str()
            .map_err(|_| not_ort("version string is not UTF-8"))?
            .to_owned();
        let required_minor = ort::sys::ORT_API_VERSION;
        let mut parts = version.split('.').map(str::parse::<u32>);
        let supported = matches!(
            (parts.next(), parts.next()),
            (Some(Ok(1)), Some(Ok(minor))) if minor >= required_minor
        );
        if !supported {
            return Err(InferenceError::UnsupportedVersion {
                path: path.to_path_buf(),
                found: version,
                required_minor,
            });
        }
        // SAFETY: `base` is valid (above); GetApi returns null for unsupported API versions.
        let api_ptr = unsafe { ((*base).GetApi)(required_minor) };
        if api_ptr.is_null() {
            return Err(InferenceError::UnsupportedVersion {
                path: path.to_path_buf(),
                found: version,
                required_minor,
            });
        }
        tracing::info!(path = %path.display(), %version, "loaded ONNX Runtime");
        // SAFETY: a non-null table for API version `required_minor` is at least as large as the
        // `OrtApi` struct ort-sys declares for that version (the C API only ever appends), and it
        // holds plain function pointers, so a bitwise copy is valid. The library stays loaded for
        // the life of the process (ORT_LIBRARY below), so the pointers stay valid.
        unsafe { std::ptr::read(api_ptr) }
    };
    if ORT_LIBRARY.set(library).is_err() {
        // Unreachable in practice: only init_backend loads, once, under the STATE lock.
        return Err(InferenceError::ApiAlreadySet);
    }
    Ok(api)
}

/// Locates an ONNX Runtime shared library.
///
/// Returns `ORT_DYLIB_PATH` if that is set and not empty (even if the file does not exist, so a
/// misconfiguration fails loudly in [`init_backend`]); otherwise asks `python3` where the
/// `onnxruntime` package is and returns its `capi/libonnxruntime.so*`. `None` if neither is found.
pub fn find_onnxruntime() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let output = Command::new("python3")
        .args([
            "-c",
            "import onnxruntime, os; print(os.path.dirname(onnxruntime.__file__))",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        tracing::debug!("python3 cannot import onnxruntime");
        return None;
    }
    let package_dir = String::from_utf8(output.stdout).ok()?;
    onnxruntime_in_dir(&Path::new(package_dir.trim()).join("capi"))
}

/// The ONNX Runtime library in a wheel's `capi` directory: `libonnxruntime.so` or a versioned
/// `libonnxruntime.so.X.Y.Z`, preferring the highest version when there are several.
fn onnxruntime_in_dir(dir: &Path) -> Option<PathBuf> {
    let mut best: Option<(Vec<u32>, PathBuf)> = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix("libonnxruntime.so") else {
            continue;
        };
        let version: Vec<u32> = match rest.strip_prefix('.') {
            None if rest.is_empty() => Vec::new(),
            Some(v) => match v.split('.').map(str::parse).collect() {
                Ok(v) => v,
                Err(_) => continue,
            },
            None => continue,
        };
        if best.as_ref().is_none_or(|(b, _)| version > *b) {
            best = Some((version, entry.path()));
        }
    }
    best.map(|(_, path)| path)
}

/// One pooled session with its reusable single-row input tensor.
struct Slot {
    session: Session,
    /// `[1, D]` input tensor owned by the backend; rows are copied into it in place.
    row: Tensor<f32>,
}

/// The validated signature of a routing model.
#[derive(Debug, Clone)]
struct Signature {
    input_name: String,
    output_name: String,
    /// The names as C strings, for [`run_raw`].
    input_name_c: CString,
    output_name_c: CString,
    input_dim: usize,
    output_dim: usize,
    /// `Some(b)` if the model's batch dimension is fixed at `b`; `None` if dynamic.
    fixed_batch: Option<usize>,
}

/// A loaded routing model: scores feature rows. `Send + Sync`; share it with an `Arc`.
pub struct Scorer {
    /// Sessions for single rows, each with its input tensor.
    slots: Box<[Mutex<Slot>]>,
    next: AtomicUsize,
    /// Sessions for multi-row batches.
    batch: BatchSessions,
    signature: Signature,
    backend: Backend,
}

/// Where [`Scorer::score_batch`] runs.
enum BatchSessions {
    /// On the single-row slots' sessions (their model takes any batch size).
    Shared,
    /// On a separate session of the model as given, because the slots run a copy with the batch
    /// dimension pinned to 1 (tract: see [`pin_batch_to_one`]).
    Dedicated(Mutex<Session>),
}

impl fmt::Debug for Scorer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scorer")
            .field("backend", &self.backend.name())
            .field("sessions", &self.slots.len())
            .field("rows_pinned", &self.single_row_specialised())
            .field("signature", &self.signature)
            .finish()
    }
}

#[derive(Clone, Copy)]
enum ModelSource<'a> {
    File(&'a Path),
    Bytes(&'a [u8]),
}

impl Scorer {
    /// A pool size matching the cores available to the process.
    pub fn default_sessions() -> usize {
        std::thread::available_parallelism().map_or(1, usize::from)
    }

    /// Loads a routing model from an ONNX file into a pool of `sessions` sessions.
    ///
    /// Fails if no backend is initialised, the file is unreadable or not a valid ONNX model, or
    /// the model does not have exactly one `float32` `[batch, D]` input and one `float32`
    /// `[batch, N]` output with `D` and `N` known.
    pub fn load(model_path: &Path, sessions: usize) -> Result<Scorer, InferenceError> {
        std::fs::metadata(model_path).map_err(|source| InferenceError::ReadModel {
            path: model_path.to_path_buf(),
            source,
        })?;
        let scorer = Self::build(ModelSource::File(model_path), sessions)?;
        tracing::info!(
            model = %model_path.display(),
            backend = scorer.backend.name(),
            sessions,
            input = %scorer.signature.input_name,
            input_dim = scorer.signature.input_dim,
            output = %scorer.signature.output_name,
            output_dim = scorer.signature.output_dim,
            "routing model loaded"
        );
        Ok(scorer)
    }

    /// Loads a routing model from the bytes of an ONNX file; see [`Scorer::load`].
    pub fn from_bytes(bytes: &[u8], sessions: usize) -> Result<Scorer, InferenceError> {
        let scorer = Self::build(ModelSource::Bytes(bytes), sessions)?;
        tracing::info!(
            backend = scorer.backend.name(),
            sessions,
            input = %scorer.signature.input_name,
            input_dim = scorer.signature.input_dim,
            output = %scorer.signature.output_name,
            output_dim = scorer.signature.output_dim,
            "routing model loaded from memory"
        );
        Ok(scorer)
    }

    fn build(source: ModelSource<'_>, sessions: usize) -> Result<Scorer, InferenceError> {
        if sessions == 0 {
            return Err(InferenceError::NoSessions);
        }
        let (backend, environment) = initialised()?;
        let open = |source: ModelSource<'_>| -> Result<Session, InferenceError> {
            let mut builder = session_builder(&environment, &backend)?;
            Ok(match source {
                ModelSource::File(path) => builder.commit_from_file(path)?,
                ModelSource::Bytes(bytes) => builder.commit_from_memory(bytes)?,
            })
        };
        let first = open(source)?;
        let signature = signature_of(&first)?;

        // tract runs a dynamic batch dimension through a generic, much slower path (measured
        // 6x at D=4096 and 20x at D=16384), so with tract single rows run on a copy of the
        // model whose batch dimension is pinned to 1, and batches on the model as given.
        let pinned = if backend == Backend::Tract && signature.fixed_batch.is_none() {
            pinned_sessions(source, sessions, &signature, open)
        } else {
            None
        };
        let (row_sessions, batch) = match pinned {
            Some(row_sessions) => (row_sessions, BatchSessions::Dedicated(Mutex::new(first))),
            None => {
                let mut row_sessions = Vec::with_capacity(sessions);
                row_sessions.push(first);
                for _ in 1..sessions {
                    row_sessions.push(open(source)?);
                }
                (row_sessions, BatchSessions::Shared)
            }
        };
        let slots = row_sessions
            .into_iter()
            .map(|session| {
                let row =
                    Tensor::<f32>::new(&Allocator::default(), [1_usize, signature.input_dim])?;
                Ok(Mutex::new(Slot { session, row }))
            })
            .collect::<Result<Vec<_>, InferenceError>>()?;
        Ok(Scorer {
            slots: slots.into_boxed_slice(),
            next: AtomicUsize::new(0),
            batch,
            signature,
            backend,
        })
    }

    /// Whether single rows run on a copy of the model specialised to batch size 1 (tract with a
    /// dynamic batch dimension).
    pub fn single_row_specialised(&self) -> bool {
        matches!(self.batch, BatchSessions::Dedicated(_))
    }

    /// Feature count `D` of one input row.
    pub fn input_dim(&self) -> usize {
        self.signature.input_dim
    }

    /// Score count `N` of one output row.
    pub fn output_dim(&self) -> usize {
        self.signature.output_dim
    }

    /// Number of sessions in the pool.
    pub fn sessions(&self) -> usize {
        self.slots.len()
    }

    /// The backend this scorer runs on.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Scores one row: `features.len()` must be [`input_dim`](Self::input_dim) and `out.len()`
    /// [`output_dim`](Self::output_dim). Reuses the pooled session's input tensor.
    pub fn score(&self, features: &[f32], out: &mut [f32]) -> Result<(), InferenceError> {
        let sig = &self.signature;
        if features.len() != sig.input_dim {
            return Err(InferenceError::InputLength {
                expected: sig.input_dim,
                got: features.len(),
            });
        }
        if out.len() != sig.output_dim {
            return Err(InferenceError::OutputLength {
                expected: sig.output_dim,
                got: out.len(),
            });
        }
        if let Some(b) = sig.fixed_batch.filter(|&b| b != 1) {
            return Err(InferenceError::BatchSize {
                expected: b,
                got: 1,
            });
        }
        let mut slot = self.acquire();
        let Slot { session, row } = &mut *slot;
        let (_, buffer) = row.try_extract_tensor_mut::<f32>()?;
        buffer.copy_from_slice(features);
        run_raw(session, row.ptr(), sig, 1, out)
    }

    /// Scores `n_rows` rows laid out row-major in `rows` (`n_rows * input_dim` values); returns
    /// `n_rows * output_dim` scores, row-major.
    pub fn score_batch(&self, rows: &[f32], n_rows: usize) -> Result<Vec<f32>, InferenceError> {
        let sig = &self.signature;
        let expected = n_rows.saturating_mul(sig.input_dim);
        if rows.len() != expected {
            return Err(InferenceError::InputLength {
                expected,
                got: rows.len(),
            });
        }
        if let Some(b) = sig.fixed_batch.filter(|&b| b != n_rows) {
            return Err(InferenceError::BatchSize {
                expected: b,
                got: n_rows,
            });
        }
        match (n_rows, &self.batch) {
            (0, _) => Ok(Vec::new()),
            (1, _) => {
                let mut out = vec![0.0; sig.output_dim];
                self.score(rows, &mut out)?;
                Ok(out)
            }
            (_, BatchSessions::Shared) => run_batch(&mut self.acquire().session, sig, rows, n_rows),
            (_, BatchSessions::Dedicated(session)) => {
                run_batch(&mut session.lock(), sig, rows, n_rows)
            }
        }
    }

    /// A free session, trying each once round-robin; waits on one if all are busy.
    fn acquire(&self) -> MutexGuard<'_, Slot> {
        let n = self.slots.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        for i in 0..n {
            if let Some(guard) = self.slots[(start + i) % n].try_lock() {
                return guard;
            }
        }
        self.slots[start].lock()
    }
}

fn run_batch(
    session: &mut Session,
    sig: &Signature,
    rows: &[f32],
    n_rows: usize,
) -> Result<Vec<f32>, InferenceError> {
    let input = TensorRef::from_array_view(([n_rows, sig.input_dim], rows))?;
    let mut out = vec![0.0; n_rows * sig.output_dim];
    run_raw(session, input.ptr(), sig, n_rows, &mut out)?;
    Ok(out)
}

/// Runs `session` on `input` through the backend's C API and copies the `[n_rows, output_dim]`
/// float output into `out`.
///
/// Why not `Session::run`: ort 2.0.0-rc.14 builds each session output with
/// `Value::from_session_output_ptr`, which calls `GetTypeInfo` and never releases the type
/// info it gets; that leaked 56 bytes per run on tract (about 0.56 MB/s at 10k decisions/s;
/// found with heaptrack, counted by `tests/inference.rs`). Here every object the call creates (output value, shape info, error
/// status) is released, and the run allocates nothing of ours.
fn run_raw(
    session: &mut Session,
    input: *const ort::sys::OrtValue,
    sig: &Signature,
    n_rows: usize,
    out: &mut [f32],
) -> Result<(), InferenceError> {
    let api = ort::api();
    let input_names = [sig.input_name_c.as_ptr()];
    let output_names = [sig.output_name_c.as_ptr()];
    let inputs = [input];
    let mut output: *mut ort::sys::OrtValue = std::ptr::null_mut();
    // SAFETY: the session is exclusively borrowed (ONNX Runtime's Run is not thread safe); the
    // name and value arrays outlive the call and hold one valid entry each, matching the
    // model's one input and one output (checked by `signature_of`).
    let status = unsafe {
        (api.Run)(
            session.ptr_mut(),
            std::ptr::null(),
            input_names.as_ptr(),
            inputs.as_ptr(),
            1,
            output_names.as_ptr(),
            1,
            &mut output,
        )
    };
    check_status("Run", status)?;
    let output = OwnedValue(output);
    if output.0.is_null() {
        return Err(InferenceError::Api {
            call: "Run",
            message: format!("no value for output `{}`", sig.output_name),
        });
    }
    let mut info: *mut ort::sys::OrtTensorTypeAndShapeInfo = std::ptr::null_mut();
    // SAFETY: `output` is a live value returned by Run.
    check_status("GetTensorTypeAndShape", unsafe {
        (api.GetTensorTypeAndShape)(output.0, &mut info)
    })?;
    let info = OwnedShapeInfo(info);
    let mut element = ort::sys::ONNXTensorElementDataType::ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
    let mut rank = 0usize;
    // SAFETY: `info` is live until dropped; the out-pointers are valid locals.
    unsafe {
        check_status(
            "GetTensorElementType",
            (api.GetTensorElementType)(info.0, &mut element),
        )?;
        check_status(
            "GetDimensionsCount",
            (api.GetDimensionsCount)(info.0, &mut rank),
        )?;
    }
    if element != ort::sys::ONNXTensorElementDataType::ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT {
        return Err(InferenceError::Api {
            call: "GetTensorElementType",
            message: format!("output `{}` is not float32", sig.output_name),
        });
    }
    let expected = [n_rows as i64, sig.output_dim as i64];
    let mut dims = vec![0i64; rank];
    // SAFETY: `dims` has room for `rank` values.
    check_status("GetDimensions", unsafe {
        (api.GetDimensions)(info.0, dims.as_mut_ptr(), rank)
    })?;
    if dims != expected || out.len() != n_rows * sig.output_dim {
        return Err(InferenceError::OutputShape {
            expected: expected.to_vec(),
            got: dims,
        });
    }
    let mut data: *mut std::ffi::c_void = std::ptr::null_mut();
    // SAFETY: `output` is a live float tensor of `out.len()` elements (checked above); the data
    // pointer is valid until the value is released, after the copy.
    unsafe {
        check_status(
            "GetTensorMutableData",
            (api.GetTensorMutableData)(output.0, &mut data),
        )?;
        if data.is_null() {
            return Err(InferenceError::Api {
                call: "GetTensorMutableData",
                message: "null data".into(),
            });
        }
        out.copy_from_slice(std::slice::from_raw_parts(data.cast::<f32>(), out.len()));
    }
    Ok(())
}

/// An output value owned by us: released on drop.
struct OwnedValue(*mut ort::sys::OrtValue);

impl Drop for OwnedValue {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the pointer came from Run and is released exactly once.
            unsafe { (ort::api().ReleaseValue)(self.0) }
        }
    }
}

/// A tensor type-and-shape info owned by us: released on drop.
struct OwnedShapeInfo(*mut ort::sys::OrtTensorTypeAndShapeInfo);

impl Drop for OwnedShapeInfo {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the pointer came from GetTensorTypeAndShape and is released exactly once.
            unsafe { (ort::api().ReleaseTensorTypeAndShapeInfo)(self.0) }
        }
    }
}

/// `Ok` for a null status; otherwise its message as an error (the status is released).
fn check_status(call: &'static str, status: ort::sys::OrtStatusPtr) -> Result<(), InferenceError> {
    if status.0.is_null() {
        return Ok(());
    }
    let api = ort::api();
    // SAFETY: a non-null status from the API; its message is a NUL-terminated string valid
    // until the status is released, which happens after it is copied.
    let message = unsafe {
        let msg = (api.GetErrorMessage)(status.0);
        let text = if msg.is_null() {
            String::from("unknown error")
        } else {
            CStr::from_ptr(msg).to_string_lossy().into_owned()
        };
        (api.ReleaseStatus)(status.0);
        text
    };
    Err(InferenceError::Api { call, message })
}

/// `sessions` sessions of the model with its batch dimension pinned to 1, or `None` (logged)
/// if that copy cannot be made or does not have the expected signature; the caller then uses
/// the model as given.
fn pinned_sessions(
    source: ModelSource<'_>,
    sessions: usize,
    signature: &Signature,
    open: impl Fn(ModelSource<'_>) -> Result<Session, InferenceError>,
) -> Option<Vec<Session>> {
    let attempt = || -> Result<Vec<Session>, InferenceError> {
        let bytes = match source {
            ModelSource::Bytes(bytes) => pin_batch_to_one(bytes)?,
            ModelSource::File(path) => {
                let bytes = std::fs::read(path).map_err(|source| InferenceError::ReadModel {
                    path: path.to_path_buf(),
                    source,
                })?;
                pin_batch_to_one(&bytes)?
            }
        };
        let first = open(ModelSource::Bytes(&bytes))?;
        let pinned = signature_of(&first)?;
        if pinned.fixed_batch != Some(1)
            || pinned.input_dim != signature.input_dim
            || pinned.output_dim != signature.output_dim
        {
            return Err(InferenceError::InvalidModel(format!(
                "batch-1 copy has signature {pinned:?}, expected batch 1 of {signature:?}"
            )));
        }
        let mut all = Vec::with_capacity(sessions);
        all.push(first);
        for _ in 1..sessions {
            all.push(open(ModelSource::Bytes(&bytes))?);
        }
        Ok(all)
    };
    match attempt() {
        Ok(sessions) => Some(sessions),
        Err(e) => {
            tracing::warn!(
                error = %e,
                "cannot specialise the model to batch size 1; single rows use the dynamic-batch model (slower on tract)"
            );
            None
        }
    }
}

/// Re-encodes an ONNX model with the first dimension of its graph input and output set to 1
/// wherever it is symbolic or unknown, and every other use of those symbols in the graph's
/// declared value shapes likewise.
fn pin_batch_to_one(bytes: &[u8]) -> Result<Vec<u8>, InferenceError> {
    use prost::Message;
    use tract_onnx::pb;
    use tract_onnx::pb::tensor_shape_proto::dimension::Value as DimValue;

    fn dims(info: &mut pb::ValueInfoProto) -> Option<&mut Vec<pb::tensor_shape_proto::Dimension>> {
        match info.r#type.as_mut()?.value.as_mut()? {
            pb::type_proto::Value::TensorType(tensor) => Some(&mut tensor.shape.as_mut()?.dim),
        }
    }

    let mut model = pb::ModelProto::decode(bytes)
        .map_err(|e| InferenceError::InvalidModel(format!("cannot decode ONNX protobuf: {e}")))?;
    let graph = model
        .graph
        .as_mut()
        .ok_or_else(|| InferenceError::InvalidModel("model has no graph".to_owned()))?;
    let initializers: std::collections::HashSet<String> =
        graph.initializer.iter().map(|t| t.name.clone()).collect();
    let mut symbols = std::collections::HashSet::new();
    let inputs = graph
        .input
        .iter_mut()
        .filter(|i| !initializers.contains(&i.name));
    for info in inputs.chain(graph.output.iter_mut()) {
        if let Some(first) = dims(info).and_then(|d| d.first_mut()) {
            match first.value.take() {
                Some(DimValue::DimValue(v)) => first.value = Some(DimValue::DimValue(v)),
                Some(DimValue::DimParam(symbol)) => {
                    symbols.insert(symbol);
                    first.value = Some(DimValue::DimValue(1));
                }
                None => first.value = Some(DimValue::DimValue(1)),
            }
        }
    }
    for info in &mut graph.value_info {
        for dim in dims(info).into_iter().flatten() {
            if matches!(&dim.value, Some(DimValue::DimParam(s)) if symbols.contains(s)) {
                dim.value = Some(DimValue::DimValue(1));
            }
        }
    }
    Ok(model.encode_to_vec())
}

fn session_builder(
    environment: &Environment,
    backend: &Backend,
) -> Result<SessionBuilder, InferenceError> {
    let builder = Session::builder(environment)?;
    let builder = match backend {
        // tract is ~28x slower without its optimisation pass; it implements no thread options.
        Backend::Tract => builder
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(ort::Error::from)?,
        // Concurrency comes from the session pool; one intra-op thread per run avoids spinning
        // worker threads competing with the async runtime for the cores.
        Backend::OnnxRuntime { .. } => builder
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(ort::Error::from)?
            .with_intra_threads(1)
            .map_err(ort::Error::from)?
            .with_inter_threads(1)
            .map_err(ort::Error::from)?,
    };
    Ok(builder)
}

/// Checks the routing-model signature: one float `[batch, D]` input, one float `[batch, N]`
/// output, `D` and `N` known.
fn signature_of(session: &Session) -> Result<Signature, InferenceError> {
    let [input] = session.inputs() else {
        return Err(InferenceError::InvalidModel(format!(
            "expected exactly one input, found {}",
            session.inputs().len()
        )));
    };
    let [output] = session.outputs() else {
        return Err(InferenceError::InvalidModel(format!(
            "expected exactly one output, found {}",
            session.outputs().len()
        )));
    };
    let (in_batch, input_dim) = matrix_shape("input", input.name(), input.dtype())?;
    let (out_batch, output_dim) = matrix_shape("output", output.name(), output.dtype())?;
    if let (Some(a), Some(b)) = (in_batch, out_batch)
        && a != b
    {
        return Err(InferenceError::InvalidModel(format!(
            "input batch {a} differs from output batch {b}"
        )));
    }
    let c_name = |role: &str, name: &str| {
        CString::new(name).map_err(|_| {
            InferenceError::InvalidModel(format!("{role} name {name:?} contains a NUL byte"))
        })
    };
    Ok(Signature {
        input_name: input.name().to_owned(),
        output_name: output.name().to_owned(),
        input_name_c: c_name("input", input.name())?,
        output_name_c: c_name("output", output.name())?,
        input_dim,
        output_dim,
        fixed_batch: in_batch.or(out_batch),
    })
}

/// `(batch, width)` of a float32 rank-2 tensor type; batch `None` when dynamic.
fn matrix_shape(
    role: &str,
    name: &str,
    dtype: &ValueType,
) -> Result<(Option<usize>, usize), InferenceError> {
    let invalid = |what: String| InferenceError::InvalidModel(format!("{role} `{name}` {what}"));
    let ValueType::Tensor { ty, shape, .. } = dtype else {
        return Err(invalid(format!("is not a tensor ({dtype})")));
    };
    if *ty != TensorElementType::Float32 {
        return Err(invalid(format!("has element type {ty}, expected f32")));
    }
    let [batch, width] = **shape else {
        return Err(invalid(format!(
            "has rank {} ({:?}), expected [batch, width]",
            shape.len(),
            &**shape
        )));
    };
    let width = usize::try_from(width)
        .ok()
        .filter(|&w| w > 0)
        .ok_or_else(|| invalid(format!("has unknown or empty width ({:?})", &**shape)))?;
    let batch = usize::try_from(batch).ok().filter(|&b| b > 0);
    Ok((batch, width))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Nothing in the library's unit-test process initialises a backend, so these run against an
    // uninitialised `ort` and must leave it that way.

    #[test]
    fn backend_names() {
        assert_eq!(Backend::Tract.name(), "tract");
        let ort = Backend::OnnxRuntime {
            library: PathBuf::from("/x/libonnxruntime.so"),
        };
        assert_eq!(ort.name(), "onnxruntime");
        assert_eq!(ort.to_string(), "onnxruntime (/x/libonnxruntime.so)");
    }

    #[test]
    fn missing_library_is_a_load_error() {
        let backend = Backend::OnnxRuntime {
            library: PathBuf::from("/nonexistent/libonnxruntime.so.1.31.1"),
        };
        let err = init_backend(&backend).expect_err("bogus path must fail");
        assert!(
            matches!(err, InferenceError::LoadLibrary { .. }),
            "unexpected error: {err}"
        );
        assert!(current_backend().is_none());
    }

    #[test]
    fn library_without_ort_symbols_is_rejected() {
        // libm is present on any glibc system and exports no OrtGetApiBase.
        let backend = Backend::OnnxRuntime {
            library: PathBuf::from("libm.so.6"),
        };
        let err = init_backend(&backend).expect_err("libm is not ONNX Runtime");
        assert!(
            matches!(err, InferenceError::NotOnnxRuntime { .. }),
            "unexpected error: {err}"
        );
        assert!(current_backend().is_none());
    }

    /// Builds a fake `libonnxruntime` whose `OrtGetApiBase` reports `version` and whose `GetApi`
    /// returns null, with the system C compiler.
    fn fake_onnxruntime(dir: &Path, version: &str) -> PathBuf {
        let source = dir.join(format!("fake-{version}.c"));
        let library = dir.join(format!("libfake-{version}.so"));
        std::fs::write(
            &source,
            format!(
                "typedef struct {{ const void *(*get_api)(unsigned); const char *(*version)(void); }} Base;\n\
                 static const void *get_api(unsigned v) {{ (void)v; return 0; }}\n\
                 static const char *version(void) {{ return \"{version}\"; }}\n\
                 static const Base base = {{ get_api, version }};\n\
                 const Base *OrtGetApiBase(void) {{ return &base; }}\n"
            ),
        )
        .expect("write C source");
        let status = Command::new("cc")
            .args(["-shared", "-fPIC", "-o"])
            .arg(&library)
            .arg(&source)
            .status()
            .expect("run cc (a C compiler is needed to link Rust here anyway)");
        assert!(status.success(), "cc failed for {}", source.display());
        library
    }

    #[test]
    fn old_or_incompatible_onnxruntime_is_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let required = ort::sys::ORT_API_VERSION;
        let too_old = format!("1.{}.0", required - 1);
        let newer_but_no_api = format!("1.{}.0", required + 100);
        for version in [too_old.as_str(), "2.0.0", "garbage", &newer_but_no_api] {
            let library = fake_onnxruntime(dir.path(), version);
            let err = init_backend(&Backend::OnnxRuntime { library })
                .expect_err("fake runtime must be rejected");
            assert!(
                matches!(&err, InferenceError::UnsupportedVersion { found, required_minor, .. }
                    if found == version && *required_minor == required),
                "{version}: {err}"
            );
            assert!(current_backend().is_none());
        }
    }

    #[test]
    fn scorer_needs_an_initialised_backend() {
        let err = Scorer::from_bytes(b"not a model", 1).expect_err("no backend yet");
        assert!(
            matches!(err, InferenceError::NotInitialised),
            "unexpected error: {err}"
        );
        let err = Scorer::from_bytes(b"not a model", 0).expect_err("zero sessions");
        assert!(matches!(err, InferenceError::NoSessions), "{err}");
    }

    #[test]
    fn finds_versioned_library_in_capi_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(onnxruntime_in_dir(dir.path()), None);
        for name in [
            "libonnxruntime_providers_shared.so",
            "libonnxruntime.so.1.9.0",
            "libonnxruntime.so.1.31.1",
            "libonnxruntime.so.1.31.1.bak",
            "onnxruntime.py",
        ] {
            std::fs::write(dir.path().join(name), b"").expect("write");
        }
        assert_eq!(
            onnxruntime_in_dir(dir.path()),
            Some(dir.path().join("libonnxruntime.so.1.31.1"))
        );
        assert_eq!(onnxruntime_in_dir(&dir.path().join("missing")), None);
    }

    #[test]
    fn pins_symbolic_and_unknown_batch_dimensions() {
        use prost::Message;
        use tract_onnx::pb;
        use tract_onnx::pb::tensor_shape_proto::dimension::Value as DimValue;

        let info = |name: &str, dims: Vec<Option<DimValue>>| pb::ValueInfoProto {
            name: name.to_owned(),
            r#type: Some(pb::TypeProto {
                value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                    elem_type: 1,
                    shape: Some(pb::TensorShapeProto {
                        dim: dims
                            .into_iter()
                            .map(|value| pb::tensor_shape_proto::Dimension {
                                value,
                                ..Default::default()
                            })
                            .collect(),
                    }),
                })),
                ..Default::default()
            }),
            ..Default::default()
        };
        let sym = |s: &str| Some(DimValue::DimParam(s.to_owned()));
        let val = |v: i64| Some(DimValue::DimValue(v));
        let model = pb::ModelProto {
            graph: Some(pb::GraphProto {
                initializer: vec![pb::TensorProto {
                    name: "W".to_owned(),
                    ..Default::default()
                }],
                input: vec![
                    info("features", vec![sym("N"), val(8)]),
                    // An initializer listed as an input (old IR) keeps its shape.
                    info("W", vec![sym("N"), val(2)]),
                ],
                output: vec![info("quality", vec![None, val(2)])],
                value_info: vec![
                    info("hidden", vec![sym("N"), sym("H")]),
                    info("fixed", vec![val(4), val(2)]),
                ],
                ..Default::default()
            }),
            ..Default::default()
        };
        let pinned = pin_batch_to_one(&model.encode_to_vec()).expect("pin");
        let pinned = pb::ModelProto::decode(pinned.as_slice()).expect("decode");
        let graph = pinned.graph.expect("graph");
        let shape = |info: &pb::ValueInfoProto| match &info
            .r#type
            .as_ref()
            .and_then(|t| t.value.as_ref())
        {
            Some(pb::type_proto::Value::TensorType(t)) => t
                .shape
                .as_ref()
                .map(|s| s.dim.iter().map(|d| d.value.clone()).collect::<Vec<_>>()),
            None => None,
        };
        assert_eq!(shape(&graph.input[0]), Some(vec![val(1), val(8)]));
        assert_eq!(shape(&graph.input[1]), Some(vec![sym("N"), val(2)]));
        assert_eq!(shape(&graph.output[0]), Some(vec![val(1), val(2)]));
        assert_eq!(shape(&graph.value_info[0]), Some(vec![val(1), sym("H")]));
        assert_eq!(shape(&graph.value_info[1]), Some(vec![val(4), val(2)]));

        let err = pin_batch_to_one(b"\xff\xff not a protobuf").expect_err("garbage");
        assert!(matches!(err, InferenceError::InvalidModel(_)), "{err}");
    }

    #[test]
    fn matrix_shape_validation() {
        let tensor = |ty, dims: &[i64]| ValueType::Tensor {
            ty,
            shape: ort::value::Shape::new(dims.iter().copied()),
            dimension_symbols: ort::value::SymbolicDimensions::empty(dims.len()),
        };
        assert_eq!(
            matrix_shape("input", "x", &tensor(TensorElementType::Float32, &[-1, 8]))
                .expect("dynamic batch"),
            (None, 8)
        );
        assert_eq!(
            matrix_shape("input", "x", &tensor(TensorElementType::Float32, &[1, 3]))
                .expect("fixed batch"),
            (Some(1), 3)
        );
        for bad in [
            tensor(TensorElementType::Float32, &[8]),
            tensor(TensorElementType::Float32, &[1, 2, 3]),
            tensor(TensorElementType::Float32, &[-1, -1]),
            tensor(TensorElementType::Float32, &[-1, 0]),
            tensor(TensorElementType::Float64, &[-1, 8]),
        ] {
            let err = matrix_shape("input", "x", &bad).expect_err("must be rejected");
            assert!(matches!(err, InferenceError::InvalidModel(_)), "{err}");
        }
    }
}
