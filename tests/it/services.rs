//! Kafka + S3 flows against the loopback services (filled in with the Kafka/S3 issue).
