output "dataset_id" { value = var.dataset_id }
output "table_ids" { value = { for id in keys(var.tables) : id => "projects/${var.project_id}/datasets/${var.dataset_id}/tables/${id}" } }
output "table_specs" { value = { for id in keys(var.tables) : id => "${var.project_id}:${var.dataset_id}.${id}" } }
output "stub_tables" { value = var.tables }
