import { execFileSync } from 'node:child_process';
import type { TestProject } from 'vitest/node';

/**
 * Finds the Postgres every test file makes its own database in:
 * TEST_DATABASE_URL or DATABASE_URL when set, else a testcontainers Postgres
 * when a Docker engine answers, else one line saying what to do.
 */
declare module 'vitest' {
  export interface ProvidedContext {
    adminDatabaseUrl: string;
  }
}

let stopContainer: (() => Promise<unknown>) | undefined;

export async function setup(project: TestProject): Promise<void> {
  console.log(`tests run on Node ${process.version}`);
  const fromEnv = process.env.TEST_DATABASE_URL || process.env.DATABASE_URL;
  if (fromEnv) {
    project.provide('adminDatabaseUrl', fromEnv);
    return;
  }
  if (dockerAnswers()) {
    const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
    const container = await new PostgreSqlContainer('postgres:16-alpine').start();
    stopContainer = () => container.stop();
    project.provide('adminDatabaseUrl', container.getConnectionUri());
    return;
  }
  throw new Error('no Postgres for the tests: set TEST_DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/postgres) or start a Docker engine');
}

export async function teardown(): Promise<void> {
  await stopContainer?.();
}

function dockerAnswers(): boolean {
  try {
    execFileSync('docker', ['info', '--format', '{{.ServerVersion}}'], { stdio: 'ignore', timeout: 5000 });
    return true;
  } catch {
    return false;
  }
}
