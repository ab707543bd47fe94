// JSON from files that come from anywhere. JSON.parse keeps the last of duplicate keys
// silently, so a file could say two things about one tensor (or one field) and mean the one a
// reader happens to take: duplicates are refused instead, at any depth.
import { FormatError } from '../core/errors.js';

/** JSON.parse, refusing (FormatError naming `what`) invalid JSON and any object with a key
 * given twice ("a" and "\u0061" are the same key). */
export function parseJsonStrict(text: string, what: string): unknown {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new FormatError(`${what} is not valid JSON (${(e as Error).message})`);
  }
  const duplicate = firstDuplicateKey(text);
  if (duplicate !== null) throw new FormatError(`${what} has the key ${JSON.stringify(duplicate)} twice in one object`);
  return value;
}

/** The first key that repeats within one object of valid JSON `text`, or null. One pass over
 * the text: a stack of the keys seen in each open object (null for arrays). */
export function firstDuplicateKey(text: string): string | null {
  const stack: Array<Set<string> | null> = [];
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      let j = i + 1;
      let escaped = false;
      while (text.charCodeAt(j) !== 0x22) {
        if (text.charCodeAt(j) === 0x5c /* \ */) {
          escaped = true;
          j++;
        }
        j++;
      }
      if (expectKey) {
        const key = escaped ? (JSON.parse(text.slice(i, j + 1)) as string) : text.slice(i + 1, j);
        const keys = stack[stack.length - 1]!;
        if (keys.has(key)) return key;
        keys.add(key);
        expectKey = false;
      }
      i = j;
    } else if (c === 0x7b /* { */) {
      stack.push(new Set());
      expectKey = true;
    } else if (c === 0x5b /* [ */) {
      stack.push(null);
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
    } else if (c === 0x2c /* , */) {
      expectKey = stack[stack.length - 1] != null;
    }
  }
  return null;
}
