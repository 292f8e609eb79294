//! Choosing an adapter and creating the device: the one place that reads `--backend`,
//! `--adapter`, `WGPU_BACKEND` and `WGPU_ADAPTER_NAME`. Everything else takes a [`Gpu`].

use crate::error::{Error, Result};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// What the host asked of a device, counted where each thing happens: a dispatch when it is
/// recorded into a pass, a submission when it is submitted, a wait when the host blocks on the
/// queue, bytes when they are written to or mapped back from the device.
#[derive(Debug, Default)]
pub struct Meter {
    dispatches: AtomicU64,
    submissions: AtomicU64,
    waits: AtomicU64,
    bytes_uploaded: AtomicU64,
    bytes_read_back: AtomicU64,
}

/// A reading of a [`Meter`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MeterReading {
    /// Compute dispatches recorded.
    pub dispatches: u64,
    /// Queue submissions.
    pub submissions: u64,
    /// Waits for the GPU.
    pub waits: u64,
    /// Bytes written to the GPU.
    pub bytes_uploaded: u64,
    /// Bytes read back from the GPU.
    pub bytes_read_back: u64,
}

impl Meter {
    /// Counts one dispatch (called by the code that records it).
    pub(crate) fn dispatched(&self) {
        self.dispatches.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn read(&self) -> MeterReading {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MeterReading {
            dispatches: get(&self.dispatches),
            submissions: get(&self.submissions),
            waits: get(&self.waits),
            bytes_uploaded: get(&self.bytes_uploaded),
            bytes_read_back: get(&self.bytes_read_back),
        }
    }
}

/// Which adapter to use. Empty fields fall back to `WGPU_BACKEND` and `WGPU_ADAPTER_NAME`,
/// then to wgpu's default choice.
#[derive(Clone, Debug, Default)]
pub struct AdapterChoice {
    /// `vulkan`, `gl`, `metal`, `dx12` (comma-separated list allowed).
    pub backend: Option<String>,
    /// A case-insensitive substring of the adapter's name.
    pub adapter: Option<String>,
    /// The adapter's place in the list of the chosen backends' adapters (`unroll info` numbers
    /// them); wins over the name.
    pub index: Option<usize>,
    /// Where no adapter is named: a data-parallel rank's place on its machine, which picks the
    /// adapter of that place (modulo their number) among those of wgpu's preferred backend.
    pub local_rank: Option<usize>,
}

const NO_ADAPTER_HINT: &str = "install a software adapter: `apt-get update && apt-get install -y mesa-vulkan-drivers libvulkan1` \
(Vulkan, lavapipe) or Mesa's EGL/GL drivers `libegl1 libgl1-mesa-dri` (GL, llvmpipe); or run on the CPU with --device cpu";

impl AdapterChoice {
    fn backends(&self) -> Result<wgpu::Backends> {
        let name = self
            .backend
            .clone()
            .or_else(|| std::env::var("WGPU_BACKEND").ok().filter(|s| !s.is_empty()));
        match name {
            None => Ok(wgpu::Backends::all()),
            Some(list) => {
                let backends = wgpu::Backends::from_comma_list(&list);
                if backends.is_empty() {
                    Err(Error::Adapter {
                        problem: format!("unknown backend `{list}`"),
                        hint: "use one of vulkan, gl, metal, dx12".into(),
                    })
                } else {
                    Ok(backends)
                }
            }
        }
    }

    /// The backends asked for, as the user wrote them: `backend dx12`, or `any backend`.
    fn describe_backends(&self) -> String {
        self.backend
            .clone()
            .or_else(|| std::env::var("WGPU_BACKEND").ok().filter(|s| !s.is_empty()))
            .map_or("any backend".into(), |b| format!("backend {b}"))
    }

    /// Whether the flags or the environment name one adapter (by its name or its index).
    pub fn names_one(&self) -> bool {
        self.index.is_some() || self.adapter_name().is_some()
    }

    fn adapter_name(&self) -> Option<String> {
        self.adapter.clone().or_else(|| {
            std::env::var("WGPU_ADAPTER_NAME")
                .ok()
                .filter(|s| !s.is_empty())
        })
    }
}

fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}

/// Every adapter wgpu finds for the chosen backends.
#[cfg(not(target_arch = "wasm32"))]
pub fn list_adapters(choice: &AdapterChoice) -> Result<Vec<wgpu::Adapter>> {
    let backends = choice.backends()?;
    Ok(pollster::block_on(
        instance(backends).enumerate_adapters(backends),
    ))
}

/// One line describing an adapter: name, backend and device type.
pub fn describe(info: &wgpu::AdapterInfo) -> String {
    // Browsers may keep the adapter's name to themselves.
    let name = match info.name.as_str() {
        "" => "unnamed adapter",
        name => name,
    };
    let backend = match info.backend {
        wgpu::Backend::Vulkan => "Vulkan",
        wgpu::Backend::Metal => "Metal",
        wgpu::Backend::Dx12 => "DX12",
        wgpu::Backend::Gl => "GL",
        wgpu::Backend::BrowserWebGpu => "WebGPU",
        _ => "noop backend",
    };
    let kind = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => "discrete GPU",
        wgpu::DeviceType::IntegratedGpu => "integrated GPU",
        wgpu::DeviceType::VirtualGpu => "virtual GPU",
        wgpu::DeviceType::Cpu => "software adapter",
        wgpu::DeviceType::Other => "other adapter",
    };
    format!("{name} ({backend}, {kind})")
}

/// The device and queue of one adapter, with the error reporting the rest of the crate uses.
pub struct Gpu {
    /// The adapter's name, backend and type.
    pub info: wgpu::AdapterInfo,
    /// The device, created with the adapter's own limits.
    pub device: wgpu::Device,
    /// Its queue.
    pub queue: wgpu::Queue,
    /// Whether the device has timestamp queries (for `bench --profile`).
    pub timestamps: bool,
    /// Whether the device has subgroup operations (`Features::SUBGROUP`), which the
    /// recurrence's subgroup variant uses.
    pub subgroups: bool,
    /// Errors that no error scope caught, and the device-lost message.
    uncaptured: Arc<Mutex<Vec<String>>>,
    /// What was asked of the device.
    pub meter: Arc<Meter>,
    /// The co-residency probe's answer, measured on first use (see
    /// [`crate::gpu::recurrence::resident_workgroups`]; never in a browser).
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) resident: std::sync::OnceLock<usize>,
    /// Set when a grid barrier failed on this device: every step runs ordered from then on.
    pub(crate) grid_failed: Arc<std::sync::atomic::AtomicBool>,
    /// The compute pipelines, built on first use and shared by every step on this device (a
    /// recurrence's builds compile when a step first asks for them, once per device).
    kernels: std::sync::OnceLock<Arc<crate::gpu::Kernels>>,
}

impl Gpu {
    /// The device's compute pipelines, built the first time they are asked for.
    pub fn kernels(&self) -> Result<Arc<crate::gpu::Kernels>> {
        if let Some(k) = self.kernels.get() {
            return Ok(k.clone());
        }
        let built = self.scoped("building the compute pipelines", || {
            crate::gpu::Kernels::new(&self.device)
        })?;
        Ok(self.kernels.get_or_init(|| Arc::new(built)).clone())
    }

    /// Picks an adapter as `choice` says and creates its device.
    ///
    /// ```
    /// let gpu = unroll::gpu::Gpu::new(&unroll::gpu::AdapterChoice::default())?;
    /// println!("{}", unroll::gpu::describe(&gpu.info));
    /// # Ok::<(), unroll::Error>(())
    /// ```
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(choice: &AdapterChoice) -> Result<Self> {
        pollster::block_on(Self::new_async(choice))
    }

    /// [`Gpu::new`] as a future: the form a browser needs, where nothing may block.
    pub async fn new_async(choice: &AdapterChoice) -> Result<Self> {
        let backends = choice.backends()?;
        let instance = instance(backends);
        // A browser lists no adapters: it only answers a request for one.
        let listed = !cfg!(target_arch = "wasm32");
        let adapters = if listed {
            instance.enumerate_adapters(backends).await
        } else {
            Vec::new()
        };
        if listed && adapters.is_empty() {
            return Err(Error::Adapter {
                problem: format!("no GPU adapter found for {}", choice.describe_backends()),
                hint: NO_ADAPTER_HINT.into(),
            });
        }
        let names = || -> Vec<String> {
            adapters
                .iter()
                .enumerate()
                .map(|(i, a)| format!("{i}: {}", describe(&a.get_info())))
                .collect()
        };
        let adapter = match (choice.index, choice.adapter_name()) {
            (Some(i), _) => {
                let found = names();
                adapters.get(i).cloned().ok_or_else(|| Error::Adapter {
                    problem: format!(
                        "there is no adapter {i}: {} found for {}",
                        found.len(),
                        choice.describe_backends()
                    ),
                    hint: format!("pick one of {}", found.join("; ")),
                })?
            }
            (None, Some(name)) => {
                let wanted = name.to_lowercase();
                let names = names();
                adapters
                    .into_iter()
                    .find(|a| a.get_info().name.to_lowercase().contains(&wanted))
                    .ok_or_else(|| Error::Adapter {
                        problem: format!("no adapter's name contains `{name}`"),
                        hint: format!("the adapters found are: {}", names.join("; ")),
                    })?
            }
            (None, None) => {
                let preferred = instance
                    .request_adapter(&wgpu::RequestAdapterOptions {
                        power_preference: wgpu::PowerPreference::HighPerformance,
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| Error::Adapter {
                        problem: format!("wgpu chose no adapter: {e}"),
                        hint: NO_ADAPTER_HINT.into(),
                    })?;
                match choice.local_rank {
                    None => preferred,
                    Some(r) => {
                        let backend = preferred.get_info().backend;
                        let same: Vec<_> = adapters
                            .into_iter()
                            .filter(|a| a.get_info().backend == backend)
                            .collect();
                        match same.len() {
                            0 => preferred,
                            n => same[r % n].clone(),
                        }
                    }
                }
            }
        };
        Self::from_adapter_async(adapter).await
    }

    /// Creates the device of a given adapter, asking for the adapter's real limits (the
    /// defaults cap storage bindings and workgroup memory below what the hardware has).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_adapter(adapter: wgpu::Adapter) -> Result<Self> {
        pollster::block_on(Self::from_adapter_async(adapter))
    }

    /// [`Gpu::from_adapter`] as a future.
    pub async fn from_adapter_async(adapter: wgpu::Adapter) -> Result<Self> {
        let info = adapter.get_info();
        let wanted =
            wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES;
        // Subgroups natively only: a browser's WGSL would need `enable subgroups;`, which the
        // shaders (naga's dialect) do not say.
        let subgroups = match cfg!(target_arch = "wasm32") {
            true => wgpu::Features::empty(),
            false => wgpu::Features::SUBGROUP,
        };
        let features = adapter.features() & (wanted | subgroups);
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("unroll"),
                required_features: features,
                required_limits: adapter.limits(),
                ..Default::default()
            })
            .await
            .map_err(|e| Error::Gpu {
                op: format!("creating the device on {}", describe(&info)),
                message: e.to_string(),
            })?;
        let uncaptured = Arc::new(Mutex::new(Vec::new()));
        let sink = uncaptured.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            sink.lock().unwrap().push(e.to_string());
        }));
        let sink = uncaptured.clone();
        device.set_device_lost_callback(move |reason, message| {
            sink.lock()
                .unwrap()
                .push(format!("device lost ({reason:?}): {message}"));
        });
        Ok(Self {
            info,
            device,
            queue,
            timestamps: features.contains(wanted),
            subgroups: features.contains(wgpu::Features::SUBGROUP),
            uncaptured,
            meter: Arc::default(),
            #[cfg(not(target_arch = "wasm32"))]
            resident: Default::default(),
            grid_failed: Default::default(),
            kernels: Default::default(),
        })
    }

    /// The adapter's subgroup sizes, as "min–max", or "none" where it has no subgroups.
    pub fn adapter_info_subgroups(&self) -> String {
        let i = &self.info;
        if i.subgroup_max_size == 0 {
            return "none".into();
        }
        format!("{}–{}", i.subgroup_min_size, i.subgroup_max_size)
    }

    /// The device's limits.
    pub fn limits(&self) -> wgpu::Limits {
        self.device.limits()
    }

    /// Runs `f` inside validation and out-of-memory error scopes and turns what they catch
    /// (or any error that escaped earlier scopes) into an [`Error::Gpu`] naming `op`.
    ///
    /// In a browser no wait may block, so there the scopes are not opened: errors reach the
    /// uncaptured-error handler and are reported by the next [`Gpu::check`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn scoped<T>(&self, op: &str, f: impl FnOnce() -> T) -> Result<T> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let value = f();
        let errors = [
            pollster::block_on(validation.pop()),
            pollster::block_on(oom.pop()),
        ];
        if let Some(e) = errors.into_iter().flatten().next() {
            return Err(Error::Gpu {
                op: op.into(),
                message: e.to_string(),
            });
        }
        self.check(op)?;
        Ok(value)
    }

    /// Runs `f`, then reports any error the device raised (see the native form).
    #[cfg(target_arch = "wasm32")]
    pub fn scoped<T>(&self, op: &str, f: impl FnOnce() -> T) -> Result<T> {
        let value = f();
        self.check(op)?;
        Ok(value)
    }

    /// Reports an error that no scope caught (or a lost device) as an error of `op`.
    pub fn check(&self, op: &str) -> Result<()> {
        let mut errors = self.uncaptured.lock().unwrap();
        if errors.is_empty() {
            return Ok(());
        }
        let message = errors.join("; ");
        errors.clear();
        Err(Error::Gpu {
            op: op.into(),
            message,
        })
    }

    /// Submits an encoder's commands (the one place unroll submits work).
    pub fn submit(&self, encoder: wgpu::CommandEncoder) {
        self.queue.submit([encoder.finish()]);
        self.meter.submissions.fetch_add(1, Ordering::Relaxed);
    }

    /// Writes bytes to a buffer (the one place unroll uploads data); returns their number.
    pub fn write(&self, buffer: &wgpu::Buffer, offset: u64, bytes: &[u8]) -> u64 {
        self.queue.write_buffer(buffer, offset, bytes);
        let n = bytes.len() as u64;
        self.meter.bytes_uploaded.fetch_add(n, Ordering::Relaxed);
        n
    }

    /// Waits until the queue is idle.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn wait(&self, op: &str) -> Result<()> {
        self.meter.waits.fetch_add(1, Ordering::Relaxed);
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu {
                op: op.into(),
                message: e.to_string(),
            })?;
        self.check(op)
    }

    /// The largest buffer the device binds as storage: the name of the limiting wgpu limit and
    /// its value in bytes.
    pub fn storage_limit(&self) -> (&'static str, u64) {
        let limits = self.limits();
        if limits.max_storage_buffer_binding_size < limits.max_buffer_size {
            (
                "max_storage_buffer_binding_size",
                limits.max_storage_buffer_binding_size,
            )
        } else {
            ("max_buffer_size", limits.max_buffer_size)
        }
    }

    /// Reads `len` f32 values from a buffer (which needs `COPY_SRC`), starting at element `offset`.
    /// For checks, checkpoints and tests; the training loop reads back through its own staging buffer.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_f32(&self, buffer: &wgpu::Buffer, offset: usize, len: usize) -> Result<Vec<f32>> {
        pollster::block_on(self.read_f32_async(buffer, offset, len))
    }

    /// [`Gpu::read_f32`] as a future.
    pub async fn read_f32_async(
        &self,
        buffer: &wgpu::Buffer,
        offset: usize,
        len: usize,
    ) -> Result<Vec<f32>> {
        Ok(bytemuck::pod_collect_to_vec(
            &self.read_bytes(buffer, offset, len).await?,
        ))
    }

    /// Reads `len` u32 values, as [`Gpu::read_f32_async`].
    pub async fn read_u32_async(
        &self,
        buffer: &wgpu::Buffer,
        offset: usize,
        len: usize,
    ) -> Result<Vec<u32>> {
        Ok(bytemuck::pod_collect_to_vec(
            &self.read_bytes(buffer, offset, len).await?,
        ))
    }

    async fn read_bytes(
        &self,
        buffer: &wgpu::Buffer,
        offset: usize,
        len: usize,
    ) -> Result<Vec<u8>> {
        let bytes = (len * 4) as u64;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("read-back"),
            size: bytes.max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(buffer, (offset * 4) as u64, &staging, 0, bytes);
        self.submit(encoder);
        map_read(self, &staging, bytes, "reading a buffer back").await
    }
}

/// Maps a `MAP_READ` buffer, waits for it (natively by polling the device; in a browser by
/// awaiting its promise), and copies out its first `bytes` bytes.
pub(crate) async fn map_read(
    gpu: &Gpu,
    staging: &wgpu::Buffer,
    bytes: u64,
    op: &str,
) -> Result<Vec<u8>> {
    let mut data = Vec::new();
    map_read_with(gpu, staging, bytes, op, |b| data = b.to_vec()).await?;
    Ok(data)
}

/// [`map_read`] into `out` as f32, reusing its allocation (a fresh one of a large model's
/// gradients costs page faults on every step).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn map_read_f32_into(
    gpu: &Gpu,
    staging: &wgpu::Buffer,
    bytes: u64,
    op: &str,
    out: &mut Vec<f32>,
) -> Result<()> {
    let fill = |b: &[u8]| {
        out.clear();
        match bytemuck::try_cast_slice::<u8, f32>(b) {
            Ok(v) => out.extend_from_slice(v),
            Err(_) => out.extend(b.chunks_exact(4).map(bytemuck::pod_read_unaligned::<f32>)),
        }
    };
    pollster::block_on(map_read_with(gpu, staging, bytes, op, fill))
}

/// Maps `staging`'s first `bytes` bytes, hands them to `f`, unmaps.
async fn map_read_with(
    gpu: &Gpu,
    staging: &wgpu::Buffer,
    bytes: u64,
    op: &str,
    f: impl FnOnce(&[u8]),
) -> Result<()> {
    let slice = staging.slice(..bytes);
    let (tx, rx) = futures_intrusive::channel::shared::oneshot_channel();
    slice.map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    #[cfg(not(target_arch = "wasm32"))]
    gpu.wait(op)?;
    match rx.receive().await {
        Some(Ok(())) => {}
        other => {
            return Err(Error::Gpu {
                op: op.into(),
                message: format!("mapping the read-back buffer failed: {other:?}"),
            });
        }
    }
    {
        let view = slice.get_mapped_range().map_err(|e| Error::Gpu {
            op: op.into(),
            message: e.to_string(),
        })?;
        f(&view);
    }
    staging.unmap();
    gpu.meter
        .bytes_read_back
        .fetch_add(bytes, Ordering::Relaxed);
    Ok(())
}

/// `unroll info`: every adapter found, the one that would be picked, and its relevant limits.
#[cfg(not(target_arch = "wasm32"))]
pub fn info_report(choice: &AdapterChoice) -> Result<String> {
    use std::fmt::Write;
    let mut s = String::new();
    let adapters = list_adapters(choice)?;
    let _ = writeln!(
        s,
        "adapters found (by index: --adapter-index I picks one, train --devices I,J several):"
    );
    if adapters.is_empty() {
        return Err(Error::Adapter {
            problem: format!("no GPU adapter found for {}", choice.describe_backends()),
            hint: NO_ADAPTER_HINT.into(),
        });
    }
    for (i, a) in adapters.iter().enumerate() {
        let info = a.get_info();
        let _ = writeln!(
            s,
            "  {i}: {} (driver: {} {})",
            describe(&info),
            info.driver,
            info.driver_info
        );
    }
    let gpu = Gpu::new(choice)?;
    let l = gpu.limits();
    let _ = writeln!(s, "would use: {}", describe(&gpu.info));
    let _ = writeln!(
        s,
        "  max_storage_buffer_binding_size   {}",
        l.max_storage_buffer_binding_size
    );
    let _ = writeln!(
        s,
        "  max_buffer_size                   {}",
        l.max_buffer_size
    );
    let _ = writeln!(
        s,
        "  max_storage_buffers_per_stage     {}",
        l.max_storage_buffers_per_shader_stage
    );
    let _ = writeln!(
        s,
        "  max_compute_workgroup_storage     {}",
        l.max_compute_workgroup_storage_size
    );
    let _ = writeln!(
        s,
        "  max_compute_invocations_per_wg    {}",
        l.max_compute_invocations_per_workgroup
    );
    let _ = writeln!(
        s,
        "  max_compute_workgroups_per_dim    {}",
        l.max_compute_workgroups_per_dimension
    );
    let _ = writeln!(s, "  timestamp queries                 {}", gpu.timestamps);
    let info = gpu.adapter_info_subgroups();
    let _ = writeln!(s, "  subgroup sizes                    {info}");
    let _ = writeln!(s, "  subgroup operations               {}", gpu.subgroups);
    let same = |a: &&wgpu::Adapter| {
        let i = a.get_info();
        (i.name, i.vendor, i.device, i.backend)
            == (
                gpu.info.name.clone(),
                gpu.info.vendor,
                gpu.info.device,
                gpu.info.backend,
            )
    };
    let shapes: Vec<String> = (adapters.iter().find(same))
        .map(|a| a.cooperative_matrix_properties())
        .unwrap_or_default()
        .iter()
        .map(|p| {
            let (m, n, k) = (p.m_size, p.n_size, p.k_size);
            format!("{m}×{n}×{k} {:?}→{:?}", p.ab_type, p.cr_type)
        })
        .collect();
    let listed = if shapes.is_empty() {
        "none".to_string()
    } else {
        shapes.join(", ")
    };
    let _ = writeln!(s, "  cooperative matrices              {listed}");
    Ok(s)
}
