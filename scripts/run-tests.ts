// Runs the whole suite with bun test and ends with the plain summary line CI reads:
// "N passed, N failed". Fails when any test fails or errors, or when none ran.
export {}; // a module, for top-level await
const args = process.argv.slice(2);
// Real-model tests load weights and run a 30-layer model on 2 CPU cores: allow minutes, not seconds.
const proc = Bun.spawn([process.execPath, "test", "--timeout", "300000", ...args], { stdout: "inherit", stderr: "pipe", env: process.env });

let tail = "";
const decoder = new TextDecoder();
for await (const chunk of proc.stderr) {
  const text = decoder.decode(chunk, { stream: true });
  process.stderr.write(text);
  tail = (tail + text).slice(-4000);
}
const code = await proc.exited;

const count = (word: string) => Number(tail.match(new RegExp(`^\\s*(\\d+) ${word}$`, "m"))?.[1] ?? 0);
const passed = count("pass");
const failed = count("fail") + count("error");
console.log(`${passed} passed, ${failed} failed`);
process.exit(code !== 0 || failed > 0 || passed === 0 ? 1 : 0);
