/** What a command prints on stdout: a line, or a value as indented JSON. Logs go to stderr. */
export const out = (text: string): void => void process.stdout.write(`${text}\n`);
export const json = (value: unknown): void => out(JSON.stringify(value, null, 2));
