// ESLint flat config. Deliberately narrow: the type-aware rules that catch lost promises and
// non-exhaustive switches, plus the import boundaries of docs/architecture.md (core imports
// nothing of the project; router no connector or API; a connector no other connector) enforced
// by no-restricted-imports per directory. It runs inside `npm test` (before vitest), so new code
// must keep it green; test/lint.test.ts proves the rules fire on deliberately bad fixtures.
import { readdirSync } from 'node:fs';
import comments from '@eslint-community/eslint-plugin-eslint-comments/configs';
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';

// Every folder under src/connectors is one connector; read from disk so a new one is covered.
const CONNECTORS = readdirSync(new URL('./src/connectors', import.meta.url), { withFileTypes: true })
  .filter((e) => e.isDirectory())
  .map((e) => e.name);

// Every folder under src/helpdesks is one helpdesk adapter.
const HELPDESKS = readdirSync(new URL('./src/helpdesks', import.meta.url), { withFileTypes: true })
  .filter((e) => e.isDirectory())
  .map((e) => e.name);

const boundary = (message, group) => ({ group, message });

/** The boundary rules, exported so the lint test can check fixtures against the same config. */
export const boundaries = [
  {
    // core is the leaf every other part builds on: one level deep, so any `../` leaves it.
    files: ['src/core/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [boundary('src/core imports nothing of the project outside src/core', ['../*', '../**'])],
      }],
    },
  },
  {
    files: ['src/router/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [
          boundary('the router depends on core only, never on a connector', ['../connectors', '../connectors/**']),
          boundary('the router depends on core only, never on the API or the app wiring', ['../api', '../api/**', '../app.js', '../cli.js', '../dlq.js']),
        ],
      }],
    },
  },
  {
    // The SQL read model is a projection of the bus: it builds on core, and the router, connectors
    // and API never reach into it except through the app's wiring (and the API's queries).
    files: ['src/read-model/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [
          boundary('the read model depends on core only', ['../router', '../router/**', '../connectors', '../connectors/**', '../api', '../api/**', '../app.js', '../cli.js', '../dlq.js', '../probes.js']),
        ],
      }],
    },
  },
  {
    // Reports read the SQL read model and count time on the SLA's calendar: nothing else.
    files: ['src/reports/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [
          boundary('reports depend on core, the read model and the business-hours calendar only', ['../router/*', '!../router/business-hours.js', '../connectors', '../connectors/**', '../api', '../api/**', '../app.js', '../cli.js', '../dlq.js', '../probes.js']),
        ],
      }],
    },
  },
  {
    // The ops console reads the bus and the connector host's report; it never reaches into the
    // router or one connector's code (what it shows must hold for every channel).
    files: ['src/console/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [
          boundary('the console depends on core, the API and the connector host, never on the router', ['../router', '../router/**']),
          boundary('the console knows no connector by name: only src/connectors/host.ts', CONNECTORS.flatMap((c) => [`../connectors/${c}`, `../connectors/${c}/**`])),
        ],
      }],
    },
  },
  ...CONNECTORS.map((name) => ({
    files: [`src/connectors/${name}/**/*.ts`],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [
          boundary(
            `a connector imports no other connector (src/connectors/${name} → another connector folder)`,
            CONNECTORS.filter((other) => other !== name).flatMap((other) => [
              `../${other}`, `../${other}/**`, `../../connectors/${other}`, `../../connectors/${other}/**`,
            ]),
          ),
          boundary('a connector depends on core and the connector contract, never on the router, the API or the app wiring', [
            '../../router/**',
            '../../api/**',
            '../../app.js',
            '../../cli.js',
            '../../dlq.js',
          ]),
        ],
      }],
    },
  })),
  {
    // The helpdesk host, its records and the contract: core only.
    files: ['src/helpdesks/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [
          boundary('src/helpdesks depends on core and its contract only, never on the router, the API, a connector or the app wiring', [
            '../router', '../router/**', '../api', '../api/**', '../connectors', '../connectors/**', '../app.js', '../cli.js', '../dlq.js',
          ]),
        ],
      }],
    },
  },
  ...HELPDESKS.map((name) => ({
    files: [`src/helpdesks/${name}/**/*.ts`],
    rules: {
      'no-restricted-imports': ['error', {
        // With a single adapter folder the "no other adapter" group is empty, which eslint refuses.
        patterns: [
          boundary(
            `a helpdesk adapter imports no other adapter (src/helpdesks/${name} → another helpdesk folder)`,
            HELPDESKS.filter((other) => other !== name).flatMap((other) => [`../${other}`, `../${other}/**`, `../../helpdesks/${other}`, `../../helpdesks/${other}/**`]),
          ),
          boundary('a helpdesk adapter depends on core and the helpdesk contract only (not the host), never on the router, the API, a connector or the app wiring', [
            '../host.js', '../answers.js', '../mapping.js', '../registry.js',
            '../../router/**', '../../api/**', '../../connectors/**', '../../app.js', '../../cli.js', '../../dlq.js',
          ]),
        ].filter((p) => p.group.length > 0),
      }],
    },
  })),
];

export default defineConfig(
  {
    ignores: ['dist/**', 'node_modules/**', 'coverage/**', 'data/**', '.ci/**', 'test/fixtures/lint/**'],
  },
  {
    // Every disable says why (`-- reason`), and a disable that no longer suppresses anything fails.
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    plugins: comments.recommended.plugins,
    rules: { '@eslint-community/eslint-comments/require-description': 'error', '@eslint-community/eslint-comments/no-unlimited-disable': 'error' },
  },
  {
    files: ['**/*.ts'],
    extends: [tseslint.configs.base],
    languageOptions: {
      parserOptions: {
        projectService: { allowDefaultProject: ['scripts/*.ts'] },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
      '@typescript-eslint/switch-exhaustiveness-check': ['error', { considerDefaultExhaustiveForUnions: true }],
    },
  },
  {
    // In the product, `void promise` needs a written reason too (an eslint-disable with `-- why`):
    // a voided rejection is still an unhandled rejection. Tests and the bench keep `void` for
    // their stand-in servers and background readers.
    files: ['src/**/*.ts'],
    rules: { '@typescript-eslint/no-floating-promises': ['error', { ignoreVoid: false }] },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    extends: [js.configs.recommended],
    languageOptions: {
      globals: { process: 'readonly', console: 'readonly', URL: 'readonly' },
    },
  },
  {
    // The console's browser code (served as is from /console/).
    files: ['src/console/assets/**/*.js'],
    languageOptions: {
      globals: {
        document: 'readonly', window: 'readonly', location: 'readonly', navigator: 'readonly', fetch: 'readonly', URL: 'readonly', URLSearchParams: 'readonly',
        sessionStorage: 'readonly', localStorage: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', Node: 'readonly', CSS: 'readonly',
        TextDecoderStream: 'readonly', AbortController: 'readonly', setInterval: 'readonly', clearInterval: 'readonly',
      },
    },
  },
  ...boundaries,
);
