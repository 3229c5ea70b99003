FROM node:20-alpine

# Install dependencies first for better caching
WORKDIR /usr/src/app
COPY package*.json ./
RUN npm ci --only=production

COPY . .
ENV NODE_ENV=production PORT=3000
EXPOSE $PORT
VOLUME ["/usr/src/app/data", "/tmp"]
SHELL ["/bin/ash", "-eo", "pipefail", "-c"]
ONBUILD COPY . /usr/src/app
ONBUILD RUN npm install
maintainer someone@example.invalid
cmd ["node", "server.js"]
