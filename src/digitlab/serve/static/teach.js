// digitlab page, teaching: "Right" and "It was: 0-9" after each answer store the digit the
// model saw as a sample (POST /samples), only when the person presses one; the counts per
// digit; "Teach the model" once there are enough (POST /finetune), its progress, and the
// news that the taught model answers from then on.
// app.js announces each digit shown ("digitlab:digit-shown") and each cleared answer
// ("digitlab:answer-cleared"); this module keeps to its own elements.

// How often the progress of a running job is asked for.
const POLL_INTERVAL_MS = 500;

const correctGroup = document.getElementById("correct");
const rightButton = document.getElementById("right");
const choiceList = document.getElementById("it-was");
const sampleNote = document.getElementById("sample-note");
const undoButton = document.getElementById("undo");
const countList = document.getElementById("sample-counts");
const samplesSummary = document.getElementById("samples-summary");
const teachButton = document.getElementById("teach-button");
const teachProgress = document.getElementById("teach-progress");
const progressBar = document.getElementById("teach-bar");
const progressText = document.getElementById("teach-stage");
const teachResult = document.getElementById("teach-result");
const modelName = document.getElementById("model-name");

let shown = null; // {digit, preprocessed}: the digit whose probabilities are shown
let storedFor = null; // the `preprocessed` array already stored, so it is stored once
let lastSample = null; // {id, label} of the sample stored last, for undo
let samplesReady = false;
let polling = false;

// ---- correcting an answer -----------------------------------------------------------

function buildChoices() {
  for (let digit = 0; digit < 10; digit++) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "choice";
    button.dataset.testid = "it-was-digit";
    button.dataset.digit = String(digit);
    button.textContent = String(digit);
    button.setAttribute("aria-label", `It was ${digit}`);
    button.addEventListener("click", () => storeSample(digit));
    choiceList.append(button);
  }
}

function setCorrectable(enabled) {
  for (const button of [rightButton, ...choiceList.children]) button.disabled = !enabled;
}

document.addEventListener("digitlab:digit-shown", (event) => {
  shown = event.detail;
  correctGroup.hidden = false;
  setCorrectable(shown.preprocessed !== storedFor);
});

document.addEventListener("digitlab:answer-cleared", () => {
  shown = null;
  correctGroup.hidden = true;
});

rightButton.addEventListener("click", () => {
  if (shown) storeSample(shown.digit);
});

// The sample is the 28x28 image the model saw, as a PNG: the server reads it like any
// upload, and it is the same digit whichever digit of a number it was.
function seenAsPng(pixels) {
  const canvas = document.createElement("canvas");
  canvas.width = 28;
  canvas.height = 28;
  const context = canvas.getContext("2d");
  const image = context.createImageData(28, 28);
  pixels.flat().forEach((value, index) => image.data.set([value, value, value, 255], index * 4));
  context.putImageData(image, 0, 0);
  return new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
}

async function storeSample(label) {
  if (!shown) return;
  const pixels = shown.preprocessed;
  setCorrectable(false);
  try {
    const response = await fetch(`/samples?label=${label}`, {
      method: "POST",
      headers: { "Content-Type": "image/png" },
      body: await seenAsPng(pixels),
    });
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.detail || `The server answered ${response.status}.`);
    storedFor = pixels;
    lastSample = { id: answer.id, label };
    sampleNote.textContent = `Kept as a sample of ${label}.`;
    undoButton.hidden = false;
    await showCounts();
  } catch (error) {
    sampleNote.textContent = `Not kept: ${error.message}`;
    undoButton.hidden = true;
    setCorrectable(shown && shown.preprocessed === pixels);
  }
}

undoButton.addEventListener("click", async () => {
  if (!lastSample) return;
  const { id, label } = lastSample;
  const response = await fetch(`/samples/${id}`, { method: "DELETE" });
  lastSample = null;
  undoButton.hidden = true;
  sampleNote.textContent =
    response.ok || response.status === 404 ? `Removed the sample of ${label}.` : "Could not remove it.";
  storedFor = null;
  if (shown) setCorrectable(true);
  await showCounts();
});

// ---- the samples and teaching -------------------------------------------------------

async function showCounts() {
  try {
    const response = await fetch("/samples");
    if (!response.ok) return;
    const samples = await response.json();
    countList.replaceChildren(
      ...samples.counts.map((count, digit) => {
        const item = document.createElement("li");
        item.dataset.digit = String(digit);
        item.innerHTML = `<span class="count-digit">${digit}</span><span class="count-value">${count}</span>`;
        item.setAttribute("aria-label", `${digit}: ${count} sample${count === 1 ? "" : "s"}`);
        return item;
      }),
    );
    samplesSummary.textContent = samples.total
      ? `${samples.total} of your digits kept` +
        (samples.ready ? "." : `; each digit you keep needs ${samples.min_per_digit} before teaching.`)
      : `None kept yet: press Right or the digit it was after an answer.`;
    samplesReady = samples.ready;
    teachButton.hidden = !samplesReady || polling;
  } catch {
    // The server is gone: app.js says so.
  }
}

teachButton.addEventListener("click", async () => {
  teachButton.disabled = true;
  try {
    const response = await fetch("/finetune", { method: "POST" });
    const answer = await response.json();
    if (!response.ok && response.status !== 409) throw new Error(answer.detail);
    followJob(response.ok ? answer : null);
  } catch (error) {
    teachResult.textContent = `Could not start teaching: ${error.message}`;
  } finally {
    teachButton.disabled = false;
  }
});

async function followJob(status) {
  polling = true;
  teachButton.hidden = true;
  teachProgress.hidden = false;
  teachResult.textContent = "";
  let current = status;
  while (!current || current.state === "running") {
    if (current) showProgress(current);
    await new Promise((resolve) => setTimeout(resolve, POLL_INTERVAL_MS));
    try {
      const response = await fetch("/finetune");
      if (response.ok) current = await response.json();
    } catch {
      // The server may be restarting: keep asking.
    }
  }
  polling = false;
  teachProgress.hidden = true;
  showOutcome(current);
  await showCounts();
}

function showProgress(status) {
  progressBar.value = status.fraction ?? 0;
  const epoch = status.epochs ? `, epoch ${status.epoch} of ${status.epochs}` : "";
  progressText.textContent = `${status.stage || "starting"}${epoch} · ${Math.round((status.fraction ?? 0) * 100)}%`;
}

function percent(value) {
  return value === null || value === undefined ? "–" : `${(value * 100).toFixed(1)}%`;
}

function showOutcome(status) {
  if (status.state === "failed") {
    teachResult.textContent = `Teaching failed: ${status.reason}`;
    return;
  }
  if (status.state !== "done") return;
  const { before, after } = status;
  teachResult.textContent =
    `Taught from ${status.samples} samples in ${Math.round(status.seconds)} s: ` +
    `your held-out digits ${percent(before.person)} → ${percent(after.person)}, ` +
    `MNIST ${percent(before.mnist)} → ${percent(after.mnist)}. ` +
    "The page now answers with the taught model.";
  modelName.textContent = `model: ${status.model}`;
}

async function start() {
  buildChoices();
  correctGroup.hidden = true;
  await showCounts();
  try {
    const response = await fetch("/finetune");
    if (!response.ok) return;
    const status = await response.json();
    if (status.state === "running") followJob(status);
  } catch {
    // Nothing to resume.
  }
}

start();
