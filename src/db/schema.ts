import type { ColumnType, Generated } from 'kysely';

/** Table types for kysely. Column names follow the SQL in migrations/. */

type Timestamp = ColumnType<Date, Date | string, Date | string>;
type Count = ColumnType<number, number | bigint, number | bigint>;

export interface CustomersTable {
  customer_id: string;
  email: string | null;
}

export interface CampaignsTable {
  campaign_id: string;
  name: string;
  advertiser_id: ColumnType<string, string | number, string | number>;
  /** Null when the campaign names its list instead (audience_segment_name). */
  audience_segment_id: ColumnType<string | null, string | number | null, string | number | null>;
  /** Absent from a source view that predates it. */
  audience_segment_name: ColumnType<string | null, string | null | undefined, string | null>;
  starts_at: Timestamp;
  measurement_ends_at: Timestamp;
}

/** The job's own record of the list each campaign that names its list is bound to. */
export interface ListBindingsTable {
  campaign_id: string;
  advertiser_id: ColumnType<string, string | number, string | number>;
  segment_name: string;
  audience_segment_id: ColumnType<string, string | number, string | number>;
  /** The job created the list (else it found it). */
  created: boolean;
  /** Criteo's createdAt of the list, when it said. */
  list_created_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
  bound_at: ColumnType<Date, Date | string | undefined, Date | string>;
}

export interface CampaignTargetGroupsTable {
  campaign_id: string;
  customer_id: string;
}

export interface ListTargetsTable {
  audience_segment_id: string;
  customer_id: string;
  campaign_id: string;
  email_fingerprint: string | null;
  email_state: 'no_customer' | 'missing' | 'invalid' | 'valid';
  identifier: Buffer | null;
}

export interface ListsTable {
  audience_segment_id: string;
  in_step: boolean;
  identifiers: Count;
  updated_at: Timestamp;
  /** pg_snapshot as text: every source change by a transaction visible in it is in the list's snapshot. */
  changes_read_in: string | null;
  source_stamp: string | null;
  snapshot_campaigns: string[] | null;
  whole_read_at: Timestamp | null;
  whole_read_due: Timestamp | null;
  /** The email rule the snapshot's verdicts were reached by (audience_sync.email_rule_stamp()). */
  email_rule: string | null;
}

/** The source change log (migration 0007), written by triggers on customers and campaign_target_groups. */
export interface SourceChangesTable {
  xid: string;
  campaign_id: string | null;
  customer_id: string | null;
  /** A marker's count of the keys its statement wrote (migration 0011); NULL on key rows and TRUNCATE markers. */
  bulk_rows: string | null;
}

export interface ListTargetCountsTable {
  audience_segment_id: string;
  scope: string;
  email_state: string;
  n: Count;
}

export interface ListMembersTable {
  audience_segment_id: ColumnType<string, string | number, string | number>;
  identifier: Buffer;
}

export type RunStatus = 'running' | 'succeeded' | 'failed' | 'interrupted' | 'aborted';
export type ListSyncStatus = 'planning' | 'sending' | 'succeeded' | 'held' | 'failed' | 'incomplete' | 'skipped';
export type BatchStatus = 'sending' | 'confirmed' | 'failed' | 'unknown' | 'superseded';
export type BatchOperation = 'add' | 'remove' | 'delete';

export interface RunsTable {
  run_id: Generated<number>;
  trigger: string;
  status: ColumnType<RunStatus, RunStatus | undefined, RunStatus>;
  as_of: Timestamp;
  options: ColumnType<Record<string, unknown>, string | undefined, string>;
  started_at: ColumnType<Date, never, never>;
  finished_at: Timestamp | null;
  error: string | null;
}

export interface ListSyncsTable {
  list_sync_id: Generated<number>;
  run_id: number;
  audience_segment_id: ColumnType<string, string | number, string | number>;
  advertiser_id: ColumnType<string | null, string | number | null, string | number | null>;
  campaign_ids: string[];
  action: 'sync' | 'empty';
  status: ColumnType<ListSyncStatus, ListSyncStatus | undefined, ListSyncStatus>;
  target_group_size: Count | null;
  missing_customers: Count | null;
  without_email: Count | null;
  invalid_emails: Count | null;
  unique_identifiers: Count | null;
  ledger_before: Count | null;
  to_add: Count | null;
  to_remove: Count | null;
  added: ColumnType<number, number | undefined, number>;
  removed: ColumnType<number, number | undefined, number>;
  emptied: ColumnType<boolean, boolean | undefined, boolean>;
  held_removals: ColumnType<number, number | undefined, number>;
  /** Customers whose email was invalid and is valid now, because the email rule changed (migration 0009). */
  newly_valid_emails: Count | null;
  reason: string | null;
  error_code: string | null;
  trace_id: string | null;
  stats_identifiers: Count | null;
  stats_matches: Count | null;
  stats_match_rate: number | null;
  stats_read_at: Timestamp | null;
  started_at: ColumnType<Date, never, never>;
  finished_at: Timestamp | null;
}

export interface BatchesTable {
  batch_id: Generated<number>;
  list_sync_id: number;
  audience_segment_id: ColumnType<string, string | number, string | number>;
  seq: number;
  operation: BatchOperation;
  size: number;
  status: ColumnType<BatchStatus, BatchStatus | undefined, BatchStatus>;
  payload: Buffer[] | null;
  http_status: number | null;
  nb_valid: number | null;
  nb_invalid: number | null;
  sample_invalid: string[] | null;
  error_code: string | null;
  error_title: string | null;
  trace_id: string | null;
  attempts: ColumnType<number, number | undefined, number>;
  waited_ms: ColumnType<number, number | undefined, number>;
  duration_ms: number | null;
  started_at: ColumnType<Date, never, never>;
  finished_at: Timestamp | null;
}

export interface PlanEntriesTable {
  list_sync_id: number;
  operation: 'add' | 'remove';
  batch_no: number;
  identifier: Buffer;
}

export interface ListSyncCampaignsTable {
  list_sync_id: number;
  campaign_id: string;
  target_group_size: Count;
  missing_customers: Count;
  without_email: Count;
  invalid_emails: Count;
  unique_identifiers: Count | null;
}

export interface Database {
  'audience_sync.customers': CustomersTable;
  'audience_sync.campaigns': CampaignsTable;
  'audience_sync.list_bindings': ListBindingsTable;
  'audience_sync.campaign_target_groups': CampaignTargetGroupsTable;
  'audience_sync.list_targets': ListTargetsTable;
  'audience_sync.lists': ListsTable;
  'audience_sync.source_changes': SourceChangesTable;
  'audience_sync.list_target_counts': ListTargetCountsTable;
  'audience_sync.list_members': ListMembersTable;
  'audience_sync.runs': RunsTable;
  'audience_sync.list_syncs': ListSyncsTable;
  'audience_sync.list_sync_campaigns': ListSyncCampaignsTable;
  'audience_sync.batches': BatchesTable;
  'audience_sync.plan_entries': PlanEntriesTable;
}
