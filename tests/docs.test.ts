// The documentation stays true: the generated pages (API reference, configuration, metrics) match
// a fresh generation from their sources, the configuration page's example is a valid config file,
// and every docs page is linked from the README with no broken relative link anywhere.
import { expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { checkFileData } from "../shared/config.ts";
import { repoRoot } from "../shared/paths.ts";
import { DOCS_DIR, generateDocs } from "../scripts/gen-docs.ts";

test("generated pages are up to date (bun run gen:docs rewrites them)", async () => {
  for (const [name, text] of Object.entries(await generateDocs())) {
    expect({ name, text: readFileSync(join(DOCS_DIR, name), "utf8") }).toEqual({ name, text });
  }
});

test("the example config file in docs/configuration.md is valid", () => {
  const page = readFileSync(join(DOCS_DIR, "configuration.md"), "utf8");
  const toml = page.match(/```toml\n([\s\S]*?)```/)![1];
  expect(checkFileData(Bun.TOML.parse(toml) as Record<string, unknown>, "docs example")).toEqual([]);
});

test("every docs page is linked from the README, and no relative link is broken", () => {
  const readme = readFileSync(join(repoRoot, "README.md"), "utf8");
  const pages = readdirSync(DOCS_DIR).filter((f) => f.endsWith(".md"));
  expect(pages.length).toBeGreaterThanOrEqual(5);
  for (const page of pages) expect(readme).toContain(`(docs/${page})`);
  for (const file of [join(repoRoot, "README.md"), ...pages.map((p) => join(DOCS_DIR, p))]) {
    const text = readFileSync(file, "utf8");
    for (const [, target] of text.matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)) {
      if (/^[a-z]+:/.test(target)) continue; // http:, https:, mailto:
      expect({ file, target, exists: existsSync(join(dirname(file), target)) }).toEqual({ file, target, exists: true });
    }
  }
});
