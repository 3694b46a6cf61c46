// Second tokenizer reference: llama.cpp (through node-llama-cpp's prebuilt binaries)
// tokenizes the same strings as the transformers fixture, with the same GGUF.
// Run with node (node-llama-cpp is a Node addon):
//   node scripts/reference/llama-cpp-tokens.mjs [model.gguf]
// Reads tests/fixtures/smollm2-tokenizer.json, writes tests/fixtures/smollm2-tokenizer-llamacpp.json.
import { createHash } from "node:crypto";
import { createReadStream, readFileSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { basename, join } from "node:path";
import { getLlama } from "node-llama-cpp";

const root = join(import.meta.dirname, "..", "..");
const modelPath = process.argv[2] ?? join(homedir(), ".cache/semantic/models/SmolLM2-135M-Instruct.Q4_1.gguf");
const fixture = JSON.parse(readFileSync(join(root, "tests/fixtures/smollm2-tokenizer.json"), "utf8"));

async function sha256(path) {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk);
  return hash.digest("hex");
}

const version = JSON.parse(readFileSync(join(root, "node_modules/node-llama-cpp/package.json"), "utf8")).version;
const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" });
const model = await llama.loadModel({ modelPath, vocabOnly: true });

// specialTokens=true: special tokens written in the text become their ids, as in the HF fixture.
const cases = fixture.cases.map(({ text }) => {
  const ids = Array.from(model.tokenize(text, true));
  return { text, ids, decoded: model.detokenize(ids, true) };
});

const source = `node-llama-cpp ${version} (llama.cpp ${llama.llamaCppRelease.release}), gguf ${basename(modelPath)} sha256:${await sha256(modelPath)}`;
const notes = "ids from model.tokenize(text, specialTokens=true) (no bos added); decoded = model.detokenize(ids, specialTokens=true).";
// One case per line keeps the fixture small and its diffs readable.
const json = `{"source": ${JSON.stringify(source)},\n"notes": ${JSON.stringify(notes)},\n"cases": [\n${cases.map((c) => JSON.stringify(c)).join(",\n")}\n]}\n`;
writeFileSync(join(root, "tests/fixtures/smollm2-tokenizer-llamacpp.json"), json);
console.log(`wrote ${cases.length} cases`);
await model.dispose();
await llama.dispose();
