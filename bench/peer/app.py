"""The peer of scripts/compare.sh: a minimal fastapi-users app, as its documentation builds it.

Routes (fastapi-users' standard routers, nothing hand-written):
  POST /auth/register   register router                    (JSON {email, password})
  POST /auth/jwt/login  JWT auth backend, bearer transport (form: username, password)
  GET  /users/me        users router                       (Authorization: Bearer)

Why each choice is fair to both sides:
- Same work per request where it costs: argon2id at user-service's defaults
  (shared/src/config.rs `Argon2Config::default()`: memory 19456 KiB, 2 iterations,
  parallelism 1; 16-byte salt, 32-byte hash, as the Rust `argon2` crate writes them), so a
  register is one hash and a login one verify on both sides.
- Same hashing concurrency: pwdlib hashes synchronously on the event loop, so 2 uvicorn
  workers run at most 2 hashes at once, as user-service's HASHING_CONCURRENCY (= CPU count,
  2 here) does. More workers would only queue on the same 2 cores.
- Same tokens: ES256 access tokens (user-service's default JWT_ALGORITHM), 15 minutes,
  signed and verified with PyJWT + cryptography (OpenSSL).
- Same database: the local Postgres, a fresh database per run, 16 pooled connections in
  all (8 per worker, no overflow; user-service's DATABASE_POOL_SIZE default is 16).
- Its best usual deployment: uvicorn[standard] (uvloop + httptools), no access log,
  log level warning; user-service runs with RUST_LOG=warn.
- What it does not do, and user-service does (so the comparison favours the peer): no
  refresh token or session row at login (its JWT strategy is stateless), no revocation
  check at GET /users/me (it only loads the user), no rate limit or lockout bookkeeping,
  no password policy at register, no audit records.

Environment: PEER_DATABASE_URL (postgresql+asyncpg://...), PEER_JWT_PRIVATE_KEY_FILE and
PEER_JWT_PUBLIC_KEY_FILE (PEM, P-256). `python app.py create-schema` creates the table and
exits; uvicorn serves `app:app`.
"""

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncGenerator
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi_users import BaseUserManager, FastAPIUsers, UUIDIDMixin, schemas
from fastapi_users.authentication import (
    AuthenticationBackend,
    BearerTransport,
    JWTStrategy,
)
from fastapi_users.db import SQLAlchemyBaseUserTableUUID, SQLAlchemyUserDatabase
from fastapi_users.password import PasswordHelper
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase

DATABASE_URL = os.environ["PEER_DATABASE_URL"]
PRIVATE_KEY = Path(os.environ["PEER_JWT_PRIVATE_KEY_FILE"]).read_text()
PUBLIC_KEY = Path(os.environ["PEER_JWT_PUBLIC_KEY_FILE"]).read_text()
# Only for the reset/verify routers, which this app does not mount.
TOKEN_SECRET = os.environ.get("PEER_TOKEN_SECRET", uuid.uuid4().hex)

# user-service's Argon2Config::default(): m=19456 KiB, t=2, p=1.
password_helper = PasswordHelper(
    PasswordHash(
        (
            Argon2Hasher(
                time_cost=2,
                memory_cost=19456,
                parallelism=1,
                hash_len=32,
                salt_len=16,
            ),
        )
    )
)


class Base(DeclarativeBase):
    pass


class User(SQLAlchemyBaseUserTableUUID, Base):
    pass


class UserRead(schemas.BaseUser[uuid.UUID]):
    pass


class UserCreate(schemas.BaseUserCreate):
    pass


class UserUpdate(schemas.BaseUserUpdate):
    pass


# 8 per worker x 2 workers = 16, user-service's default pool size.
engine = create_async_engine(DATABASE_URL, pool_size=8, max_overflow=0)
async_session_maker = async_sessionmaker(engine, expire_on_commit=False)


async def get_async_session() -> AsyncGenerator[AsyncSession, None]:
    async with async_session_maker() as session:
        yield session


async def get_user_db(session: AsyncSession = Depends(get_async_session)):
    yield SQLAlchemyUserDatabase(session, User)


class UserManager(UUIDIDMixin, BaseUserManager[User, uuid.UUID]):
    reset_password_token_secret = TOKEN_SECRET
    verification_token_secret = TOKEN_SECRET


async def get_user_manager(user_db: SQLAlchemyUserDatabase = Depends(get_user_db)):
    yield UserManager(user_db, password_helper)


bearer_transport = BearerTransport(tokenUrl="auth/jwt/login")


def get_jwt_strategy() -> JWTStrategy:
    return JWTStrategy(
        secret=PRIVATE_KEY,
        lifetime_seconds=900,
        algorithm="ES256",
        public_key=PUBLIC_KEY,
    )


auth_backend = AuthenticationBackend(
    name="jwt", transport=bearer_transport, get_strategy=get_jwt_strategy
)
fastapi_users = FastAPIUsers[User, uuid.UUID](get_user_manager, [auth_backend])

app = FastAPI()
app.include_router(fastapi_users.get_auth_router(auth_backend), prefix="/auth/jwt")
app.include_router(fastapi_users.get_register_router(UserRead, UserCreate), prefix="/auth")
app.include_router(fastapi_users.get_users_router(UserRead, UserUpdate), prefix="/users")


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def create_schema() -> None:
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    await engine.dispose()


if __name__ == "__main__":
    if sys.argv[1:] != ["create-schema"]:
        sys.exit("usage: python app.py create-schema")
    asyncio.run(create_schema())
