// ESLint flat config: typescript-eslint's type-checked rules, an import-cycle
// rule, and the folder order of the pipeline (data flows down, never back up).
import js from '@eslint/js';
import prettier from 'eslint-config-prettier';
import { createTypeScriptImportResolver } from 'eslint-import-resolver-typescript';
import { importX } from 'eslint-plugin-import-x';
import tseslint from 'typescript-eslint';

/**
 * src/ folders in pipeline order: each may import from the ones before it,
 * never from one after it. sandbox stands apart (it is Criteo, not the job).
 * console (the CSMs' web console) reads everything the report does and starts
 * runs as the CLI does; only cli, which wires it as a command, imports it.
 */
const layers = ['core', 'db', 'criteo', 'source', 'sync', 'report', 'console', 'cli'];
const downstreamOf = (layer) => layers.slice(layers.indexOf(layer) + 1).map((later) => `./src/${later}`);

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'bench/results/', '.node/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    plugins: { 'import-x': importX },
    settings: { 'import-x/resolver-next': [createTypeScriptImportResolver()] },
    rules: {
      'import-x/no-cycle': 'error',
      'import-x/no-restricted-paths': [
        'error',
        {
          zones: [
            ...layers
              .filter((layer) => downstreamOf(layer).length > 0)
              .map((layer) => ({ target: `./src/${layer}`, from: downstreamOf(layer), message: 'src/ folders import only from earlier pipeline stages' })),
            { target: './src', from: ['./dev', './test', './bench'], message: 'the production build holds no dev, test or bench code' },
            { target: './src/sandbox', from: layers.filter((l) => l !== 'core').map((l) => `./src/${l}`), message: 'the sandbox stands apart from the job' },
          ],
        },
      ],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      '@typescript-eslint/consistent-type-imports': 'error',
    },
  },
  {
    // Files a reader can hold in their head: a longer function carries a one-line
    // reason beside it (an eslint-disable-next-line comment with its `-- why`).
    files: ['src/**/*.ts', 'dev/**/*.ts'],
    rules: {
      'max-lines': ['error', { max: 400 }],
      'max-lines-per-function': ['error', { max: 60, skipBlankLines: true, skipComments: true }],
    },
  },
  {
    // vitest types its asymmetric matchers (expect.any, expect.stringContaining…) as `any`, so every
    // toMatchObject({ reason: expect.stringContaining('…') }) trips this; untyped JSON is still caught by no-unsafe-member-access/-call/-argument/-return.
    files: ['test/**/*.test.ts'],
    rules: { '@typescript-eslint/no-unsafe-assignment': 'off' },
  },
  { files: ['**/*.js'], ...tseslint.configs.disableTypeChecked },
  prettier,
);
