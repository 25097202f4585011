//! [`Scorer`]: a loaded routing model and its session pool, and the raw ONNX Runtime C-API run
//! that releases everything it creates.

use std::ffi::{CStr, CString};
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use ort::AsPointer;
use ort::environment::Environment;
use ort::memory::Allocator;
use ort::session::Session;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::value::{Tensor, TensorElementType, TensorRef, ValueType};
use parking_lot::{Mutex, MutexGuard};

use super::{Backend, InferenceError, initialised};

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
pub(super) fn pin_batch_to_one(bytes: &[u8]) -> Result<Vec<u8>, InferenceError> {
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
pub(super) fn matrix_shape(
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
