#!/usr/bin/env python3
"""Reference fixtures for SmolLM2-135M-Instruct (Q4_1 GGUF), produced by Hugging Face transformers.

Writes:
  tests/fixtures/smollm2-logits.json     per-position top-20 logits + 32-token greedy continuations
  tests/fixtures/smollm2-tokenizer.json  encode/decode cases, special tokens, chat template

Usage: transformers_fixtures.py [GGUF_PATH]   (run through scripts/reference/make-fixtures.sh)

Everything here is deterministic: literal inputs, float32 on CPU, full-sequence forward passes
(no KV cache) for every greedy step, ties broken towards the lower token id.
"""
import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = Path(__file__).resolve().parents[2]
OUT_DIR = ROOT / "tests" / "fixtures"
DEFAULT_GGUF = "/root/.cache/semantic/models/SmolLM2-135M-Instruct.Q4_1.gguf"
TOP_K = 20
NEW_TOKENS = 32

# --------------------------------------------------------------------------------------------
# Logit prompts
# --------------------------------------------------------------------------------------------
CHAT_MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is 2+2? Answer briefly."},
]

CODE_PROMPT = '''def fibonacci(n):
    """Return the n-th Fibonacci number."""
    if n < 2:
        return n
    a, b = 0, 1
    for _ in range(n - 1):
        a, b = b, a + b
    return b


def is_prime(n):
'''

# --------------------------------------------------------------------------------------------
# Tokenizer cases (literal, deterministic)
# --------------------------------------------------------------------------------------------
TOKENIZER_CASES = [
    # --- trivial / edge ---
    "",
    " ",
    "  ",
    "a",
    "A",
    "\n",
    "\t",
    "\r\n",
    ".",
    "Hello",
    " Hello",
    "Hello world",
    "Hello, world!",
    "hello world",
    "HELLO WORLD",
    "The quick brown fox jumps over the lazy dog.",
    "the",
    " the",
    "  the",
    "The",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "supercalifragilisticexpialidocious",
    "antidisestablishmentarianism",
    "Pneumonoultramicroscopicsilicovolcanoconiosis",
    # --- whitespace runs ---
    "    ",
    "        ",
    "   leading spaces",
    "trailing spaces   ",
    "  both sides  ",
    "a  b",
    "a   b",
    "a    b",
    "a\tb",
    "a\t\tb",
    "\t\tindented with tabs",
    "a\nb",
    "a\n\nb",
    "a\n\n\nb",
    "\n\n\n",
    "line one\nline two\nline three",
    "trailing newline\n",
    "\nleading newline",
    "mixed \t \n whitespace",
    " \n \n ",
    "\t \t \t",
    "a \n b",
    "end with space ",
    "end with two spaces  ",
    "word\r\nwindows line\r\n",
    "\u00a0non-breaking\u00a0space",
    "zero\u200bwidth\u200bspace",
    "ideographic\u3000space",
    "form\x0cfeed and\x0bvertical tab",
    # --- numbers ---
    "0",
    "7",
    "42",
    "123",
    "1234",
    "12345",
    "1234567890",
    "31415926535897932384626433832795028841971",
    "00000000",
    "3.14159",
    "-2.5e10",
    "1,000,000",
    "1 000 000",
    "$19.99",
    "99%",
    "3/4",
    "2024-01-15",
    "12:34:56",
    "v1.2.3",
    "0x1F4A",
    "0b101010",
    "1e-9",
    "In 1492 Columbus sailed the ocean blue.",
    "The year 2000 had 366 days.",
    "Call 555-0123 now",
    "pi is approximately 3.14",
    "abc123def456",
    "x1 y22 z333",
    "\u0661\u0662\u0663 arabic-indic digits",
    "\u00bd \u00bc \u00be fractions",
    "\u2460\u2461\u2462 circled",
    "\uff11\uff12\uff13 fullwidth",
    " 1",
    "1 2 3 4 5",
    "score: \u00bd point",
    "Chapter \u2163 begins",
    "x \u00b2 y \u00b3",
    # --- punctuation ---
    "!!!",
    "???",
    "...",
    "!?!?!?",
    "---",
    "===",
    "***",
    "#####",
    "@@@",
    "((()))",
    "[[[]]]",
    "{{{}}}",
    "<<<>>>",
    "~~~",
    "___",
    "!@#$%^&*()_+-=[]{}|;':\",./<>?`~",
    "Wait... what?!",
    "\u201cSmart quotes\u201d and \u2018single\u2019",
    "em\u2014dash and en\u2013dash",
    "\u2026ellipsis character",
    "\u00a9 \u00ae \u2122 \u00a7 \u00b6",
    "\u00bfQu\u00e9? \u00a1S\u00ed!",
    "a.b.c.d",
    "Mr. Smith went to Washington.",
    "e.g., i.e., etc.",
    # --- contractions ---
    "it's",
    "IT'S",
    "It's",
    "don't",
    "DON'T",
    "Don't",
    "we're",
    "WE'RE",
    "they've",
    "THEY'VE",
    "I'm",
    "I'M",
    "you'll",
    "YOU'LL",
    "he'd",
    "HE'D",
    "can't won't shouldn't",
    "I'd've",
    "y'all",
    "rock 'n' roll",
    "'s 't 're 've 'm 'll 'd",
    "'S 'T 'RE 'VE 'M 'LL 'D",
    "John's book",
    "the dogs' bones",
    "it\u2019s curly",
    "''quoted''",
    # --- emoji ---
    "\U0001F600",
    "\U0001F600\U0001F603\U0001F604",
    "I love pizza \U0001F355!",
    "\u2764\ufe0f",
    "\U0001F44D",
    "\U0001F44D\U0001F3FB",
    "\U0001F44D\U0001F3FF",
    "\U0001F44B\U0001F3FD hello",
    "\U0001F468\u200d\U0001F469\u200d\U0001F467\u200d\U0001F466",
    "\U0001F469\u200d\U0001F4BB",
    "\U0001F3F3\ufe0f\u200d\U0001F308",
    "\U0001F1FA\U0001F1F8",
    "\U0001F1EB\U0001F1F7\U0001F1E9\U0001F1EA\U0001F1EF\U0001F1F5",
    "\U0001F3F4\U000E0067\U000E0062\U000E0073\U000E0063\U000E0074\U000E007F",
    "\U0001F525\U0001F525\U0001F525",
    "\u2705 done \u274c failed",
    "\u2600\ufe0f\u2601\ufe0f\u2602\ufe0f",
    "\U0001F9D1\u200d\U0001F91D\u200d\U0001F9D1",
    "#\ufe0f\u20e3 keycap",
    "emoji\U0001F680in\U0001F30Dtext",
    # --- CJK ---
    "\u4f60\u597d",
    "\u4f60\u597d\uff0c\u4e16\u754c\uff01",
    "\u6211\u7231\u5317\u4eac\u5929\u5b89\u95e8\u3002",
    "\u4eba\u5de5\u667a\u80fd\u6b63\u5728\u6539\u53d8\u4e16\u754c\u3002",
    "\u7e41\u9ad4\u4e2d\u6587\u6e2c\u8a66",
    "\u3053\u3093\u306b\u3061\u306f",
    "\u30ab\u30bf\u30ab\u30ca",
    "\u65e5\u672c\u8a9e\u306e\u6587\u7ae0\u3067\u3059\u3002",
    "\u6771\u4eac\u30bf\u30ef\u30fc\u306f333\u30e1\u30fc\u30c8\u30eb\u3067\u3059\u3002",
    "\uff71\uff72\uff73 halfwidth katakana",
    "\uc548\ub155\ud558\uc138\uc694",
    "\ud55c\uad6d\uc5b4 \ubb38\uc7a5\uc785\ub2c8\ub2e4.",
    "\u1100\u1161 conjoining jamo",
    "\u4e2d\u6587 and English mixed",
    # --- other scripts ---
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645",
    "\u0627\u0644\u0644\u063a\u0629 \u0627\u0644\u0639\u0631\u0628\u064a\u0629 \u062c\u0645\u064a\u0644\u0629.",
    "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd",
    "\u05e2\u05d1\u05e8\u05d9\u05ea \u05d5-English",
    "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e",
    "\u0939\u093f\u0928\u094d\u0926\u0940 \u092d\u093e\u0937\u093e",
    "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35\u0e04\u0e23\u0e31\u0e1a",
    "\u0e20\u0e32\u0e29\u0e32\u0e44\u0e17\u0e22",
    "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440!",
    "\u041c\u043e\u0441\u043a\u0432\u0430 \u2014 \u0441\u0442\u043e\u043b\u0438\u0446\u0430 \u0420\u043e\u0441\u0441\u0438\u0438.",
    "\u0423\u043a\u0440\u0430\u0457\u043d\u0441\u044c\u043a\u0430 \u043c\u043e\u0432\u0430",
    "\u0393\u03b5\u03b9\u03b1 \u03c3\u03bf\u03c5 \u03ba\u03cc\u03c3\u03bc\u03b5",
    "\u03b1\u03b2\u03b3\u03b4\u03b5 \u0391\u0392\u0393\u0394\u0395",
    "\u0540\u0561\u0575\u0565\u0580\u0565\u0576",
    "\u10e5\u10d0\u10e0\u10d7\u10e3\u10da\u10d8",
    "\u1200\u1208\u121d amharic",
    "\u0dc3\u0dd2\u0d82\u0dc4\u0dbd",
    "\u0ba4\u0bae\u0bbf\u0bb4\u0bcd",
    "\u09ac\u09be\u0982\u09b2\u09be",
    "Tie\u0302\u0301ng Vie\u0323\u0302t",
    "Ti\u1ebfng Vi\u1ec7t c\u00f3 d\u1ea5u",
    "caf\u00e9 na\u00efve r\u00e9sum\u00e9",
    "cafe\u0301 (combining accent)",
    "\u00dcber Stra\u00dfe \u00e4\u00f6\u00fc",
    "\u0141\u00f3d\u017a \u017b\u00f3\u0142\u0107",
    "\u00c5ngstr\u00f6m \u00d8re \u00e6\u00f8\u00e5",
    "\u0130stanbul \u0131\u015f\u0131k",
    "\U0001D400\U0001D401\U0001D402 math bold",
    "\u2200x \u2203y: x \u2264 y \u2227 y \u2260 \u221e",
    "\u222b f(x) dx = \u2211 a\u2099",
    "H\u2082O and E=mc\u00b2",
    "\u2190\u2191\u2192\u2193\u21d2",
    "\u2500\u2500\u2502\u250c\u2510 box drawing",
    "\ufeffBOM at start",
    "\ufffd replacement char",
    "\U0001F600\u4f60\u597dhello\u041f\u0440\u0438\u0432\u0435\u0442\u0645\u0631\u062d\u0628\u0627",
    "English, \u4e2d\u6587, \u65e5\u672c\u8a9e, \ud55c\uad6d\uc5b4, \u0627\u0644\u0639\u0631\u0628\u064a\u0629, \u05e2\u05d1\u05e8\u05d9\u05ea",
    "Stra\u00dfe \u0441\u043b\u043e\u0432\u043e \u03bb\u03cc\u03b3\u03bf\u03c2 word \u8a00\u8449",
    # --- code ---
    "def add(a, b):\n    return a + b\n",
    "import numpy as np\nx = np.zeros((3, 4), dtype=np.float32)",
    "class Foo(Bar):\n    def __init__(self):\n        super().__init__()\n",
    "if __name__ == \"__main__\":\n    main()",
    "lambda x: x ** 2",
    "print(f\"{name!r:>10}\")",
    "function add(a, b) {\n  return a + b;\n}",
    "const x = async () => { await fetch('/api'); };",
    "let arr = [1, 2, 3].map((n) => n * 2);",
    "interface User { id: number; name?: string }",
    "#include <stdio.h>\nint main(void) {\n\tprintf(\"hi\\n\");\n\treturn 0;\n}",
    "std::vector<int> v{1, 2, 3};",
    "fn main() {\n    println!(\"Hello, {}!\", name);\n}",
    "let mut x: Vec<u8> = Vec::with_capacity(1024);",
    "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfmt.Println(\"hi\")\n}",
    "public static void main(String[] args) { System.out.println(args.length); }",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name;",
    "<div class=\"container\"><p>Hello</p></div>",
    "<!DOCTYPE html>\n<html lang=\"en\">",
    "body { margin: 0; padding: 0 8px; }",
    "#!/bin/bash\nfor f in *.txt; do echo \"$f\"; done",
    "ls -la | grep '^d' > out.txt 2>&1",
    "x += 1; y -= 2; z *= 3; w /= 4;",
    "a == b && c != d || !e",
    "i++ ++i i-- --i",
    "x <<= 2; y >>= 3; z >>>= 1",
    "->  =>  ::  ...  ?.  ??",
    "# comment\n// comment\n/* block */\n-- sql comment",
    "    indented code line",
    "\tif (x) {\n\t\treturn;\n\t}",
    "    \n    \n",
    "snake_case_name camelCaseName PascalCaseName SCREAMING_CASE",
    "__dunder__ _private __mangled",
    "\\n \\t \\\\ \\\" escapes",
    "regex: ^[a-z0-9_-]{3,16}$",
    "x = {'a': 1, \"b\": [True, None, 3.5]}",
    "\\documentclass{article}\n\\begin{equation} E = mc^2 \\end{equation}",
    "$ \\frac{a}{b} + \\sqrt{x^2} $",
    "```python\nprint('hi')\n```",
    "| col1 | col2 |\n|------|------|\n| a    | b    |",
    "- item one\n- item two\n  - nested",
    "1. first\n2. second\n3. third",
    "**bold** _italic_ `code` ~~strike~~",
    "> quoted text\n>> nested quote",
    # --- URLs, emails, paths ---
    "https://www.example.com",
    "https://example.com/path/to/page?query=1&b=two#section",
    "http://localhost:8080/api/v1/users/42",
    "ftp://files.example.org/pub/file.tar.gz",
    "user.name+tag@example.co.uk",
    "/usr/local/bin/python3",
    "C:\\Users\\Admin\\Documents\\file.txt",
    "~/.config/semantic/config.toml",
    "git@github.com:user/repo.git",
    "192.168.0.1:443",
    "[2001:db8::1]:80",
    "mailto:someone@example.com?subject=Hi%20there",
    # --- JSON ---
    "{}",
    "[]",
    "{\"key\": \"value\"}",
    "{\"a\":1,\"b\":[1,2,3],\"c\":{\"d\":null,\"e\":true,\"f\":false}}",
    "{\n  \"name\": \"SmolLM2\",\n  \"params\": 135000000,\n  \"quant\": \"Q4_1\"\n}",
    "[{\"id\": 1}, {\"id\": 2}]",
    "{\"emoji\": \"\\ud83d\\ude00\", \"text\": \"caf\\u00e9\"}",
    "{\"tool_calls\": [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}]}",
    # --- special tokens written literally ---
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
    "<|im_start|>user\nhi<|im_end|>",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|><|im_end|>",
    "<|im_end|><|im_end|><|im_end|>",
    "text<|endoftext|>more text",
    " <|im_start|> ",
    "hello <|im_end|> world",
    "<|im_start|>assistant\nSure!<|im_end|><|endoftext|>",
    "<|im_start",
    "im_start|>",
    "<|im_start |>",
    "<|IM_START|>",
    "<<|im_start|>>",
    "<|im_start|><|im_start|>",
    "<repo_name>semantic<file_sep>main.ts",
    "<filename>src/index.ts\n<gh_stars>100",
    "<issue_start>bug<issue_comment>fixed<issue_closed>",
    "<jupyter_start><jupyter_text>Intro<jupyter_code>x=1<jupyter_output>1<empty_output>",
    "<jupyter_script>",
    "<reponame>",
    "<|unknown_special|>",
    "<s></s>",
    "[INST] hi [/INST]",
    # --- misc tricky ---
    "Ġ",
    "\u0120\u010a",
    "\u2581leading lower block",
    "<0x0A>",
    "\x00null byte",
    "\x01\x02\x03 control chars",
    "\x7f delete",
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "ababababababababababababababababababab",
    "\U0001F600" * 8,
    "\u4f60" * 16,
    "the the the the the the the the",
    "New York New-York newyork NEWYORK",
    "e-mail E-Mail EMAIL email",
    "COVID-19 SARS-CoV-2 mRNA",
    "Hello\u00adsoft\u00adhyphen",
    "fi\ufb01 ligature \ufb02",
    "\u212b angstrom sign vs \u00c5",
    "K\u2126 kelvin ohm",
    "A\u0308 vs \u00c4",
    # --- prose / paragraphs ---
    "Once upon a time, in a land far, far away, there lived a curious little robot named Semantic.",
    "What is the meaning of life? Many philosophers have tried to answer this question.",
    "Please summarize the following article in three sentences.",
    "Translate to French: The weather is nice today.",
    "Q: What's 17 * 23?\nA: 17 * 23 = 391.",
    "Dear Sir/Madam,\n\nI am writing to inquire about the position advertised on your website.\n\nKind regards,\nJane Doe",
    (
        "The mitochondria is the powerhouse of the cell. It produces adenosine triphosphate (ATP) through "
        "oxidative phosphorylation, a process that takes place across the inner mitochondrial membrane. "
        "Cells with high energy demands, such as muscle and nerve cells, contain many mitochondria."
    ),
    (
        "In 1969, Apollo 11 landed on the Moon. Neil Armstrong and Buzz Aldrin spent about 21.5 hours on the "
        "lunar surface, while Michael Collins orbited above in the command module Columbia. They returned "
        "to Earth on July 24, splashing down in the Pacific Ocean."
    ),
    (
        "Machine learning models are trained on large datasets. A language model predicts the next token "
        "given the previous tokens; quantization (e.g. Q4_1, Q8_0) reduces memory use by storing weights "
        "in 4 or 8 bits with per-block scales. Isn't that neat? It's how we'll run models on small devices."
    ),
    (
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore "
        "et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris nisi ut "
        "aliquip ex ea commodo consequat."
    ),
    (
        "\u5317\u4eac\u662f\u4e2d\u534e\u4eba\u6c11\u5171\u548c\u56fd\u7684\u9996\u90fd\uff0c\u4e5f\u662f"
        "\u5168\u56fd\u7684\u653f\u6cbb\u3001\u6587\u5316\u4e2d\u5fc3\u3002\u5b83\u6709\u4e09\u5343\u591a"
        "\u5e74\u7684\u5efa\u57ce\u53f2\u3002"
    ),
    (
        "Die Bundesrepublik Deutschland ist ein Bundesstaat in Mitteleuropa. Sie hat 16 L\u00e4nder und "
        "\u00fcber 83 Millionen Einwohner. Gr\u00f6\u00dfte Stadt ist Berlin."
    ),
    (
        "La tour Eiffel est une tour de fer puddl\u00e9 de 330 m\u00e8tres de hauteur situ\u00e9e \u00e0 Paris, "
        "\u00e0 l\u2019extr\u00e9mit\u00e9 nord-ouest du parc du Champ-de-Mars."
    ),
    (
        "El r\u00e1pido zorro marr\u00f3n salta sobre el perro perezoso. \u00bfCu\u00e1ntos a\u00f1os tienes? "
        "Tengo veinti\u00fan a\u00f1os."
    ),
    (
        "# Title\n\nSome intro text.\n\n## Section 1\n\n- point A\n- point B\n\n```js\nconsole.log(1)\n```\n\n"
        "Final paragraph with a [link](https://example.com) and an image ![alt](img.png)."
    ),
    (
        "User: Can you help me write a haiku about autumn?\nAssistant: Of course!\n\n"
        "Crimson leaves descend,\nwhispering to the cold earth\u2014\nthe year exhales slow."
    ),
    (
        "def quicksort(xs):\n    if len(xs) <= 1:\n        return xs\n    pivot, *rest = xs\n"
        "    left = [x for x in rest if x < pivot]\n    right = [x for x in rest if x >= pivot]\n"
        "    return quicksort(left) + [pivot] + quicksort(right)\n"
    ),
    (
        "      Leading   and   inner   runs   of   spaces   everywhere,\t\ttabs\t\ttoo,\n\n\n"
        "and   blank   lines.   \n   "
    ),
]

# --------------------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def top_k_stable(logits: np.ndarray, k: int):
    """Top-k by descending logit; ties broken by ascending token id (deterministic)."""
    order = np.lexsort((np.arange(logits.shape[0]), -logits))[:k]
    return [int(i) for i in order], [round(float(logits[i]), 5) for i in order]


@torch.no_grad()
def full_logits(model, ids):
    x = torch.tensor([ids], dtype=torch.long)
    return model(input_ids=x, use_cache=False).logits[0].to(torch.float32).numpy()


@torch.no_grad()
def greedy(model, ids, n):
    """Plain argmax loop, recomputing the full sequence each step (no KV cache, no EOS stop)."""
    seq = list(ids)
    out, margins = [], []
    for _ in range(n):
        last = full_logits(model, seq)[-1]
        top, vals = top_k_stable(last, 2)
        out.append(top[0])
        margins.append(round(vals[0] - vals[1], 5))
        seq.append(top[0])
    return out, margins


def dump(path: Path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size} bytes)")


def main():
    gguf_path = Path(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_GGUF).resolve()
    if not gguf_path.is_file():
        sys.exit(f"GGUF not found: {gguf_path}")

    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)

    import gguf as gguf_py
    from importlib.metadata import version

    sha = sha256_file(gguf_path)
    source = (
        f"transformers {transformers.__version__}, torch {torch.__version__}, "
        f"gguf {gguf_path.name} sha256:{sha} (gguf-py {version('gguf')}, tokenizers {version('tokenizers')})"
    )
    print(source)

    d, f = str(gguf_path.parent), gguf_path.name
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    model.to("cpu").eval()

    # GGUF metadata is authoritative for bos/eos: transformers' GGUF tokenizer converter
    # (integrations/ggml.py GGUFLlamaConverter) swaps/duplicates them (eos_token ends up = bos token).
    reader = gguf_py.GGUFReader(str(gguf_path))
    meta = lambda k: reader.fields[k].contents() if k in reader.fields else None  # noqa: E731
    bos_id = meta("tokenizer.ggml.bos_token_id")
    eos_id = meta("tokenizer.ggml.eos_token_id")
    chat_template = meta("tokenizer.chat_template")

    # ------------------------------------------------------------------ logits fixture
    chat_text = tok.apply_chat_template(CHAT_MESSAGES, tokenize=False, add_generation_prompt=True)
    prompts = [
        ("plain", "The capital of France is"),
        ("chat", chat_text),
        ("code", CODE_PROMPT),
    ]
    out_prompts = []
    for name, text in prompts:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        logits = full_logits(model, ids)
        top = []
        for pos in range(len(ids)):
            tids, tvals = top_k_stable(logits[pos], TOP_K)
            top.append({"ids": tids, "logits": tvals})
        gen, margins = greedy(model, ids, NEW_TOKENS)
        assert gen[0] == top[-1]["ids"][0], "greedy[0] must equal top-1 at the last prompt position"
        out_prompts.append(
            {
                "name": name,
                "text": text,
                "ids": ids,
                "top": top,
                "greedy": gen,
                # top1 - top2 logit gap at each greedy step (small gaps = near-ties, compare leniently)
                "greedy_margin": margins,
            }
        )
        print(f"[{name}] {len(ids)} prompt tokens; greedy -> {tok.decode(gen)!r}; min margin {min(margins)}")

    dump(OUT_DIR / "smollm2-logits.json", {"source": source, "prompts": out_prompts})

    # ------------------------------------------------------------------ tokenizer fixture
    # transformers' GGUF converter gives this gpt2/"smollm" vocab a plain GPT-2 ByteLevel pre-tokenizer.
    # SmolLM2's own tokenizer.json (and llama.cpp's "smollm" pre-type) first splits every \p{N} char
    # individually. For the rare case where that changes the ids, record the alternative too.
    from tokenizers import Tokenizer, pre_tokenizers

    digit_split = Tokenizer.from_str(tok.backend_tokenizer.to_str())
    digit_split.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        ]
    )
    cases = []
    seen = set()
    n_digit_diff = 0
    for text in TOKENIZER_CASES:
        assert text not in seen, f"duplicate tokenizer case: {text!r}"
        seen.add(text)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        decoded = tok.decode(ids, clean_up_tokenization_spaces=False)
        case = {"text": text, "ids": ids, "decoded": decoded}
        alt = digit_split.encode(text, add_special_tokens=False).ids
        if alt != ids:
            case["ids_digit_split"] = alt
            n_digit_diff += 1
        cases.append(case)
    print(f"cases where SmolLM2's original digit-split pre-tokenizer differs: {n_digit_diff}")
    assert len(cases) >= 220, len(cases)

    added = [
        {"id": int(i), "content": t.content, "special": bool(t.special)}
        for i, t in sorted(tok.added_tokens_decoder.items())
    ]
    chat_messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Hello! Who are you?"},
        {"role": "assistant", "content": "I'm SmolLM, a small language model."},
        {"role": "user", "content": "Tell me a joke."},
    ]
    tok_fixture = {
        "source": source,
        "notes": (
            "ids from tokenizer(text, add_special_tokens=False); decoded = tokenizer.decode(ids, "
            "clean_up_tokenization_spaces=False) (the GGUF-converted tokenizer defaults cleanup to True, "
            "which is not a faithful round-trip). bos_id/eos_id come from GGUF metadata (transformers' "
            "GGUF-converted tokenizer wrongly reports eos_token = <|im_start|>). ids_digit_split (only where "
            "different): ids under SmolLM2's original pre-tokenizer (Digits(individual) + ByteLevel, = llama.cpp "
            "'smollm'), which transformers' GGUF converter omits; it only matters for \\p{N} chars after a space."
        ),
        "special": {
            "bos_id": bos_id,
            "eos_id": eos_id,
            "unk_id": meta("tokenizer.ggml.unknown_token_id"),
            "pad_id": meta("tokenizer.ggml.padding_token_id"),
            "add_bos_token": meta("tokenizer.ggml.add_bos_token"),
            "added_tokens": added,
        },
        "chat_template": chat_template,
        "chat_example": {
            "messages": chat_messages,
            "add_generation_prompt": True,
            "rendered": tok.apply_chat_template(chat_messages, tokenize=False, add_generation_prompt=True),
        },
        "chat_example_default_system": {
            "messages": [{"role": "user", "content": "Hi"}],
            "add_generation_prompt": True,
            "rendered": tok.apply_chat_template(
                [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True
            ),
        },
        "cases": cases,
    }
    if chat_template and "tools" in chat_template:
        tools = [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Get the weather for a city",
                    "parameters": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}},
                        "required": ["city"],
                    },
                },
            }
        ]
        msgs = [{"role": "user", "content": "Weather in Paris?"}]
        tok_fixture["chat_example_tools"] = {
            "messages": msgs,
            "tools": tools,
            "add_generation_prompt": True,
            "rendered": tok.apply_chat_template(msgs, tools=tools, tokenize=False, add_generation_prompt=True),
        }
    dump(OUT_DIR / "smollm2-tokenizer.json", tok_fixture)
    print(f"{len(cases)} tokenizer cases; chat template supports tools: {'chat_example_tools' in tok_fixture}")


if __name__ == "__main__":
    main()
