"""A real RabbitMQ server for the lessons: ``RABBITMQ_URL`` if set, else Debian's
``rabbitmq-server`` started in a private folder, else a clear reason why not."""
