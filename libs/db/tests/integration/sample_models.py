"""A one-table model used to test the migration machinery."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Text
from sqlalchemy.orm import Mapped, mapped_column

from automation_db import Base, schema_metadata

metadata = schema_metadata("db_lib_sample")


class SampleBase(Base):
    __abstract__ = True
    metadata = metadata


class Widget(SampleBase):
    __tablename__ = "widgets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    created_at: Mapped[datetime]
