"""Names of the files a run writes: OUTPUT_DIR/summary.json, index.html and, per input,
OUTPUT_DIR/<stem>/{input.png, hr_<k>.png, lr_<k>.png, latents.npz, trace.json, report.json,
NOT_WITHIN_EPS.txt, progress.gif}, and while a run is going OUTPUT_DIR/.pulse_jax.lock (and
the same in --checkpoint_dir: `run_lock`). Defined once, for the writer (`outputs`) and the
readers (`gallery`, resume)."""

SUMMARY = "summary.json"
INDEX = "index.html"
REPORT = "report.json"
LATENTS = "latents.npz"
TRACE = "trace.json"
NOT_WITHIN_EPS = "NOT_WITHIN_EPS.txt"
GIF = "progress.gif"
FRAMES = "frames"
INPUT_PNG = "input.png"
LOCK = ".pulse_jax.lock"
