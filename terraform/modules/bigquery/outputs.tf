output "dataset_id" {
  description = "ID of the dataset."
  value       = google_bigquery_dataset.this.dataset_id
}

output "table_ids" {
  description = "Full IDs of the tables (table_id => projects/P/datasets/D/tables/T)."
  value       = { for id, t in google_bigquery_table.this : id => t.id }
}

output "table_specs" {
  description = "The tables as PROJECT:DATASET.TABLE (table_id => spec), the form the suite's bigquery:// URIs take."
  value       = { for id, t in google_bigquery_table.this : id => "${t.project}:${t.dataset_id}.${t.table_id}" }
}
