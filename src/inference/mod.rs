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

use std::ffi::CStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use ort::environment::Environment;
use parking_lot::Mutex;

mod scorer;
#[cfg(test)]
mod tests;

pub use scorer::Scorer;

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
