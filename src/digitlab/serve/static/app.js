// digitlab draw-a-digit page: pointer drawing, live reading of the digit or number drawn
// (POST /read), a box over each digit, probability bars of the digit chosen, and a faded
// best guess when what was drawn does not look like a digit.
// Plain JavaScript, no dependencies, no build step: the page works offline.
"use strict";

// Predictions while the pen moves are throttled to one per LIVE_INTERVAL_MS; lifting the
// pen asks at once, so the final answer never waits for a timer.
const LIVE_INTERVAL_MS = 120;
// The picture sent to the server; the server crops and scales it to 28x28 anyway, so
// a smaller copy than the screen's canvas is quicker to encode and to decode.
const UPLOAD_SIZE = 140;
// MNIST strokes are about an eighth of a digit's height. A number's digits, drawn about a
// third of the pad tall, get such a stroke with this width; a lone digit drawn across the
// pad gets a finer one, which reads as well.
const STROKE_FRACTION = 1 / 24;

const canvas = document.getElementById("canvas");
const pad = document.getElementById("pad");
const context = canvas.getContext("2d");
const clearButton = document.getElementById("clear");
const uploadInput = document.getElementById("upload");
const resultSection = document.getElementById("result");
const predictionText = document.getElementById("prediction");
const confidenceText = document.getElementById("confidence");
const notDigitText = document.getElementById("not-digit");
const latencyText = document.getElementById("latency");
const statusText = document.getElementById("status");
const barList = document.getElementById("probabilities");
const seenCanvas = document.getElementById("preprocessed");
const seenContext = seenCanvas.getContext("2d");
const modelName = document.getElementById("model-name");
const chipList = document.getElementById("digits");
const boxLayer = document.getElementById("boxes");
const probabilitiesOf = document.getElementById("probabilities-of");

const uploadCanvas = document.createElement("canvas");
uploadCanvas.width = UPLOAD_SIZE;
uploadCanvas.height = UPLOAD_SIZE;
const uploadContext = uploadCanvas.getContext("2d");

const strokes = new Map(); // pointerId -> last point of that pointer's stroke
let hasInk = false;
let latestRequest = 0; // id of the newest request; answers to older ones are dropped
let inFlight = null; // AbortController of the request on the wire, if any
let liveTimer = null;
let releasedAt = null; // {time, request}: when the pen was lifted, for the latency note
// Where the picture sent sits on the canvas, in canvas pixels (boxes are in its pixels);
// null when the browser cannot show it (a TIFF, say): then no boxes are drawn.
let placement = null;
let digitsShown = []; // the last answer's digits, each with its box in canvas pixels

// ---- drawing ------------------------------------------------------------------------

function resetPaper() {
  context.fillStyle = "#ffffff";
  context.fillRect(0, 0, canvas.width, canvas.height);
  context.strokeStyle = "#111827";
  context.fillStyle = "#111827";
  context.lineWidth = canvas.width * STROKE_FRACTION;
  context.lineCap = "round";
  context.lineJoin = "round";
}

function canvasPoint(event) {
  const box = canvas.getBoundingClientRect();
  return {
    x: ((event.clientX - box.left) * canvas.width) / box.width,
    y: ((event.clientY - box.top) * canvas.height) / box.height,
  };
}

function dot(point) {
  context.beginPath();
  context.arc(point.x, point.y, context.lineWidth / 2, 0, 2 * Math.PI);
  context.fill();
}

function segment(from, to) {
  context.beginPath();
  context.moveTo(from.x, from.y);
  context.lineTo(to.x, to.y);
  context.stroke();
}

function markInk() {
  hasInk = true;
  pad.classList.add("has-ink");
}

canvas.addEventListener("pointerdown", (event) => {
  if (event.pointerType === "mouse" && event.button !== 0) return;
  event.preventDefault();
  canvas.setPointerCapture(event.pointerId);
  const point = canvasPoint(event);
  strokes.set(event.pointerId, point);
  dot(point);
  markInk();
  scheduleLivePrediction();
});

canvas.addEventListener("pointermove", (event) => {
  let last = strokes.get(event.pointerId);
  if (!last) return;
  // Coalesced events keep fast pen and finger strokes smooth.
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
  for (const sample of events.length ? events : [event]) {
    const point = canvasPoint(sample);
    segment(last, point);
    last = point;
  }
  strokes.set(event.pointerId, last);
  scheduleLivePrediction();
});

// Hovering over a digit's box (pen up) shows that digit's probabilities; drawing is never
// blocked, since the boxes themselves take no pointer events.
canvas.addEventListener("pointermove", (event) => {
  if (strokes.size > 0 || event.pointerType === "touch" || digitsShown.length < 2) return;
  const point = canvasPoint(event);
  const index = digitsShown.findIndex(({ canvasBox: box }) =>
    box && point.x >= box[0] && point.x <= box[2] && point.y >= box[1] && point.y <= box[3]);
  if (index >= 0) selectDigit(index);
});

function endStroke(event) {
  if (!strokes.delete(event.pointerId)) return;
  if (strokes.size === 0) predictDrawing(true);
}

canvas.addEventListener("pointerup", endStroke);
canvas.addEventListener("pointercancel", endStroke);
canvas.addEventListener("contextmenu", (event) => event.preventDefault());

canvas.addEventListener("keydown", (event) => {
  if (["Delete", "Backspace", "Escape"].includes(event.key)) {
    event.preventDefault();
    clearAll();
  }
});

// ---- asking the server --------------------------------------------------------------

function scheduleLivePrediction() {
  if (liveTimer !== null) return;
  setBusy(true);
  liveTimer = setTimeout(() => {
    liveTimer = null;
    predictDrawing(false);
  }, LIVE_INTERVAL_MS);
}

function cancelLivePrediction() {
  if (liveTimer !== null) clearTimeout(liveTimer);
  liveTimer = null;
}

function drawingAsPng() {
  uploadContext.fillStyle = "#ffffff";
  uploadContext.fillRect(0, 0, UPLOAD_SIZE, UPLOAD_SIZE);
  uploadContext.imageSmoothingQuality = "high";
  uploadContext.drawImage(canvas, 0, 0, UPLOAD_SIZE, UPLOAD_SIZE);
  return new Promise((resolve) => uploadCanvas.toBlob(resolve, "image/png"));
}

async function predictDrawing(released) {
  cancelLivePrediction();
  if (!hasInk) return;
  setBusy(true);
  const request = ++latestRequest;
  if (released) releasedAt = { time: performance.now(), request };
  placement = { x: 0, y: 0, width: canvas.width, height: canvas.height };
  const png = await drawingAsPng();
  if (request !== latestRequest) return;
  await ask(request, { body: png, headers: { "Content-Type": "image/png" } });
}

async function predictFile(file) {
  cancelLivePrediction();
  const request = ++latestRequest;
  releasedAt = null;
  const form = new FormData();
  form.append("file", file, file.name);
  await ask(request, { body: form });
}

async function ask(request, options) {
  if (inFlight) inFlight.abort();
  const controller = new AbortController();
  inFlight = controller;
  setBusy(true);
  try {
    const response = await fetch("/read", { method: "POST", signal: controller.signal, ...options });
    const answer = await response.json();
    if (request !== latestRequest) return;
    if (response.ok) showAnswer(answer, request);
    else showProblem(answer.detail || `The server answered ${response.status}.`);
  } catch (error) {
    if (error.name === "AbortError" || request !== latestRequest) return;
    showProblem("The server did not answer. Is `digitlab serve` still running?");
  } finally {
    if (inFlight === controller) inFlight = null;
    if (request === latestRequest && liveTimer === null) setBusy(false);
  }
}

function setBusy(busy) {
  resultSection.setAttribute("aria-busy", busy ? "true" : "false");
}

// ---- showing the answer -------------------------------------------------------------

function buildBars(count) {
  barList.replaceChildren();
  for (let digit = 0; digit < count; digit++) {
    const item = document.createElement("li");
    item.innerHTML =
      `<span class="bar-label">${digit}</span>` +
      '<span class="bar-track" aria-hidden="true"><span class="bar-fill"></span></span>' +
      '<span class="bar-value">–</span>';
    barList.append(item);
  }
}

function showBars(probabilities) {
  if (barList.children.length !== probabilities.length) buildBars(probabilities.length);
  const top = probabilities.indexOf(Math.max(...probabilities));
  probabilities.forEach((probability, digit) => {
    const item = barList.children[digit];
    item.classList.toggle("top", digit === top);
    item.querySelector(".bar-fill").style.width = `${(probability * 100).toFixed(1)}%`;
    item.querySelector(".bar-value").textContent = formatPercent(probability);
  });
}

function formatPercent(probability) {
  const percent = probability * 100;
  if (percent >= 99.95) return "100%";
  return `${percent < 10 ? percent.toFixed(1) : percent.toFixed(0)}%`;
}

function showSeen(pixels) {
  const image = seenContext.createImageData(28, 28);
  pixels.flat().forEach((value, index) => {
    image.data.set([value, value, value, 255], index * 4);
  });
  seenContext.putImageData(image, 0, 0);
}

function showAnswer(answer, request) {
  predictionText.textContent = answer.text;
  predictionText.dataset.length = String(answer.text.length);
  const several = answer.digits.length > 1;
  const sure = `${formatPercent(answer.confidence)} sure`;
  confidenceText.textContent = several ? `${sure}, ${answer.digits.length} digits` : sure;
  statusText.textContent = "";
  showNotDigit(answer.digits);
  showDigits(answer);
  selectDigit(0);
  modelName.textContent = `model: ${answer.model}`;
  if (releasedAt && request >= releasedAt.request) {
    const milliseconds = Math.round(performance.now() - releasedAt.time);
    predictionText.dataset.releaseMs = String(milliseconds);
    latencyText.textContent = `answered ${milliseconds} ms after you lifted the pen`;
    releasedAt = null;
  }
}

// Parts whose digit score is below the threshold are not digits: their best guess stays on
// show, faded, with a line saying so (a blank pad is another answer: the server's 422).
function showNotDigit(digits) {
  const strangers = digits.filter((digit) => !digit.is_digit).length;
  const all = strangers > 0 && strangers === digits.length;
  predictionText.classList.toggle("not-digit", all);
  notDigitText.hidden = strangers === 0;
  if (strangers === 0) {
    notDigitText.textContent = "";
  } else if (all) {
    const what = digits.length === 1
      ? "This does not look like a digit"
      : "None of this looks like digits";
    notDigitText.textContent = `${what}; the faded answer is only the best guess.`;
  } else {
    notDigitText.textContent =
      `${strangers} of ${digits.length} parts do not look like digits (faded).`;
  }
  // A phone shows the note on one line, cut short: its title keeps the whole of it.
  notDigitText.title = notDigitText.textContent;
}

// One digit shows as a lone answer; several get a box each on the pad and a chip each
// under the number, and hovering, tapping or focusing either shows that digit's bars.
function showDigits(answer) {
  const scaleX = placement ? placement.width / answer.width : 0;
  const scaleY = placement ? placement.height / answer.height : 0;
  digitsShown = answer.digits.map((digit) => ({
    ...digit,
    canvasBox: placement
      ? [
          placement.x + digit.box[0] * scaleX,
          placement.y + digit.box[1] * scaleY,
          placement.x + digit.box[2] * scaleX,
          placement.y + digit.box[3] * scaleY,
        ]
      : null,
  }));
  const several = digitsShown.length > 1;
  chipList.hidden = !several;
  chipList.replaceChildren(...(several ? digitsShown.map(digitChip) : []));
  boxLayer.replaceChildren(
    ...(several ? digitsShown.filter((digit) => digit.canvasBox).map(digitBox) : []),
  );
}

function digitChip(digit, index) {
  const item = document.createElement("li");
  const chip = document.createElement("button");
  chip.type = "button";
  chip.className = digit.is_digit ? "chip" : "chip not-digit";
  chip.dataset.testid = "digit-chip";
  chip.dataset.index = String(index);
  chip.setAttribute(
    "aria-label",
    `Digit ${index + 1} of ${digitsShown.length}: ${digit.digit}, ` +
      `${formatPercent(digit.confidence)} sure` +
      `${digit.is_digit ? "" : ", does not look like a digit"}. Show its probabilities.`,
  );
  chip.innerHTML =
    `<span class="chip-digit">${digit.digit}</span>` +
    `<span class="chip-value">${formatPercent(digit.confidence)}</span>`;
  for (const kind of ["mouseenter", "focus", "click"]) {
    chip.addEventListener(kind, () => selectDigit(index));
  }
  item.append(chip);
  return item;
}

function digitBox(digit, index) {
  const [x0, y0, x1, y1] = digit.canvasBox;
  const box = document.createElement("div");
  box.className = digit.is_digit ? "box" : "box not-digit";
  box.dataset.testid = "digit-box";
  box.dataset.index = String(index);
  box.style.left = `${(x0 / canvas.width) * 100}%`;
  box.style.top = `${(y0 / canvas.height) * 100}%`;
  box.style.width = `${((x1 - x0) / canvas.width) * 100}%`;
  box.style.height = `${((y1 - y0) / canvas.height) * 100}%`;
  box.innerHTML = `<span class="box-tag">${digit.digit}</span>`;
  return box;
}

function selectDigit(index) {
  const digit = digitsShown[index];
  if (!digit) return;
  showBars(digit.probabilities);
  showSeen(digit.preprocessed);
  probabilitiesOf.textContent =
    digitsShown.length > 1 ? ` · digit ${index + 1} of ${digitsShown.length}` : "";
  for (const element of [...chipList.querySelectorAll(".chip"), ...boxLayer.children]) {
    const chosen = Number(element.dataset.index) === index;
    element.classList.toggle("selected", chosen);
    if (element.matches(".chip")) element.setAttribute("aria-pressed", String(chosen));
  }
  // teach.js offers "Right" and "It was: 0-9" for the digit shown.
  document.dispatchEvent(new CustomEvent("digitlab:digit-shown", {
    detail: { digit: digit.digit, preprocessed: digit.preprocessed },
  }));
}

function showProblem(message) {
  resetAnswer();
  confidenceText.textContent = "No answer.";
  statusText.textContent = message;
}

function resetAnswer() {
  predictionText.textContent = "";
  predictionText.classList.remove("not-digit");
  notDigitText.hidden = true;
  notDigitText.textContent = "";
  notDigitText.title = "";
  delete predictionText.dataset.length;
  digitsShown = [];
  chipList.hidden = true;
  chipList.replaceChildren();
  boxLayer.replaceChildren();
  probabilitiesOf.textContent = "";
  delete predictionText.dataset.releaseMs;
  confidenceText.textContent = "Draw something to start.";
  latencyText.textContent = "";
  statusText.textContent = "";
  showBars(new Array(barList.children.length || 10).fill(0));
  barList.querySelectorAll(".bar-value").forEach((value) => { value.textContent = "–"; });
  barList.querySelectorAll("li").forEach((item) => item.classList.remove("top"));
  seenContext.fillStyle = "#000000";
  seenContext.fillRect(0, 0, 28, 28);
  document.dispatchEvent(new CustomEvent("digitlab:answer-cleared"));
}

// ---- clear, upload, drop ------------------------------------------------------------

function clearAll() {
  cancelLivePrediction();
  latestRequest++;
  if (inFlight) inFlight.abort();
  strokes.clear();
  releasedAt = null;
  hasInk = false;
  pad.classList.remove("has-ink");
  resetPaper();
  resetAnswer();
  setBusy(false);
}

async function showFileOnPaper(file) {
  resetPaper();
  placement = null;
  try {
    const bitmap = await createImageBitmap(file);
    const scale = Math.min(canvas.width / bitmap.width, canvas.height / bitmap.height);
    const width = bitmap.width * scale;
    const height = bitmap.height * scale;
    placement = { x: (canvas.width - width) / 2, y: (canvas.height - height) / 2, width, height };
    context.drawImage(bitmap, placement.x, placement.y, width, height);
    bitmap.close();
    markInk();
  } catch {
    // The browser cannot show every format the server reads (TIFF, for one): predict anyway.
  }
}

async function useFile(file) {
  if (!file) return;
  clearAll();
  await showFileOnPaper(file);
  await predictFile(file);
}

clearButton.addEventListener("click", () => {
  clearAll();
  canvas.focus();
});

uploadInput.addEventListener("change", async () => {
  const file = uploadInput.files[0];
  await useFile(file);
  // Let choosing the same file again trigger another prediction.
  uploadInput.value = "";
});

pad.addEventListener("dragover", (event) => {
  event.preventDefault();
  pad.classList.add("dragging");
});
pad.addEventListener("dragleave", () => pad.classList.remove("dragging"));
pad.addEventListener("drop", (event) => {
  event.preventDefault();
  pad.classList.remove("dragging");
  useFile(event.dataTransfer.files[0]);
});

// ---- start --------------------------------------------------------------------------

async function showModelName() {
  try {
    const response = await fetch("/health");
    if (response.ok) {
      modelName.textContent = `model: ${(await response.json()).model}`;
      return;
    }
  } catch {
    // The server is starting or gone; try again shortly.
  }
  setTimeout(showModelName, 1000);
}

buildBars(10);
clearAll();
showModelName();
