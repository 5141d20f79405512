"""Alembic environment. The URL comes from the caller (engine.migrate) or XIANGFLOW_DATABASE_URL."""

from alembic import context
from sqlalchemy import engine_from_config, pool

from engine import models  # noqa: F401  (registers the tables)
from engine.core.db import Base
from engine.core.settings import database_url

config = context.config
target_metadata = Base.metadata


# indexes only migrations create, on PostgreSQL only, over a function the models do not know
# (migration 0014, engine/queries/names.py); comparing them against the models would report their removal
MIGRATION_ONLY_INDEXES = frozenset({"ix_subject_name_bigrams"})


def include_object(obj, name, type_, reflected, compare_to) -> bool:
    return not (type_ == "index" and name in MIGRATION_ONLY_INDEXES)


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url") or database_url(),
                      target_metadata=target_metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True,
                          include_object=include_object)
        with context.begin_transaction():
            context.run_migrations()
        return
    section = config.get_section(config.config_ini_section, {})
    section["sqlalchemy.url"] = config.get_main_option("sqlalchemy.url") or database_url()
    connectable = engine_from_config(section, prefix="sqlalchemy.", poolclass=pool.NullPool)
    with connectable.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True,
                          include_object=include_object)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
