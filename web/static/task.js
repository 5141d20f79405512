// Task page behaviour (an external file, so it runs under the Content-Security-Policy):
// - a step attachment is uploaded in place, with progress, so what was typed in the step's form stays;
// - 不通过 and 退回 ask first and say what will happen (data-confirm; {target} is the chosen 退回到 step).
(function () {
  "use strict";

  function chip(file) {
    var link = document.createElement("a");
    link.className = "file-chip";
    link.href = file.url;
    link.setAttribute("data-testid", "file-chip");
    if (file.is_image) {
      var img = document.createElement("img");
      img.src = file.url;
      img.alt = file.file_name;
      link.appendChild(img);
    }
    var name = document.createElement("span");
    name.textContent = file.kind_label + " · " + file.file_name;
    link.appendChild(name);
    return link;
  }

  document.querySelectorAll("form[data-upload-inline]").forEach(function (form) {
    var status = form.querySelector("[data-upload-status]");
    var bar = form.querySelector("progress");
    var list = document.querySelector(form.getAttribute("data-upload-list"));
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var button = form.querySelector("button[type=submit]");
      var request = new XMLHttpRequest();
      request.open("POST", form.action);
      request.setRequestHeader("Accept", "application/json");
      request.upload.onprogress = function (e) {
        if (e.lengthComputable && bar) {
          bar.hidden = false;
          bar.value = e.loaded / e.total;
        }
      };
      request.onload = function () {
        var body = {};
        try { body = JSON.parse(request.responseText); } catch (err) { body = {}; }
        if (bar) bar.hidden = true;
        button.disabled = false;
        if (request.status === 201) {
          status.textContent = "已上传:" + body.file_name;
          if (list) { list.hidden = false; list.appendChild(chip(body)); }
          form.querySelector("input[type=file]").value = "";
        } else {
          status.textContent = "未成功:" + (body.message || ("服务器返回 " + request.status));
        }
      };
      request.onerror = function () {
        if (bar) bar.hidden = true;
        button.disabled = false;
        status.textContent = "网络连接失败,文件未上传,请重试";
      };
      button.disabled = true;
      status.textContent = "正在上传…";
      request.send(new FormData(form));
    });
  });

  document.querySelectorAll("button[data-confirm]").forEach(function (button) {
    button.addEventListener("click", function (event) {
      var text = button.getAttribute("data-confirm");
      var select = button.form && button.form.querySelector("select[name=return_to]");
      if (select && select.selectedIndex >= 0) text = text.replace("{target}", select.options[select.selectedIndex].text);
      if (!window.confirm(text)) event.preventDefault();
    });
  });
})();
