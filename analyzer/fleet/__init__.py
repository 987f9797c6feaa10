"""Fleet glue, apart from the worker: the S3->Batch dispatcher Lambda, submit, manifests, metrics."""
